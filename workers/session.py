"""An authenticated keep-alive session to DTQ's HTTP API, for the worker's HTTP transport
and the ``dtq`` package's HTTP connection.

Standard library only (``http.client``): one keep-alive connection per thread with
``TCP_NODELAY`` (Nagle plus delayed ACK otherwise stalls every request ~40 ms). It logs
in with a username and password, renews the token before it expires and once more on a
401; or it carries a token it was given. Network errors, 5xx and 429 raise
:class:`Unavailable`: nothing can be known to have happened.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from chalicelib.core.errors import ConfigError, Unauthorized, Unavailable
from chalicelib.core.forms import is_http_url


class ApiSession:
    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout_s: float = 10.0,
        what: str = "--api",
    ) -> None:
        if not is_http_url(base_url):
            raise ConfigError(f"{what}: expected http(s)://host[:port], got {base_url!r}")
        if token is None and not (username and password):
            raise ConfigError(f"{what}: give a token, or a username and a password")
        parts = urlsplit(base_url)
        assert parts.hostname is not None  # is_http_url checked it
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/")
        self._username, self._password = username, password
        self._what = what
        self.timeout_s = timeout_s
        self._local = threading.local()
        #: every thread's connection, so that close() ends them all
        self._open: set[http.client.HTTPConnection] = set()
        self._open_lock = threading.Lock()
        self._token_lock = threading.Lock()
        self._fixed_token = token
        self._token: str | None = token
        self._token_renew_at = float("inf") if token else 0.0

    # -- plumbing ------------------------------------------------------------------

    def _conn(self, timeout_s: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.timeout_s)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
            with self._open_lock:
                self._open.add(conn)
        conn.sock.settimeout(timeout_s)
        return conn

    def drop(self) -> None:
        """Close this thread's connection (the next request opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._open_lock:
                self._open.discard(conn)

    def close(self) -> None:
        """Close every thread's connection."""
        with self._open_lock:
            conns, self._open = self._open, set()
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def send(
        self,
        method: str,
        path: str,
        body: Any,
        token: str | None,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int, Any]:
        """One request; ``(status, JSON body)``. Raises Unavailable when the API cannot
        be reached or answers 5xx/429 (the request may or may not have taken effect)."""
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        sent = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        for attempt in (1, 2):
            try:
                conn = self._conn(timeout_s or self.timeout_s)
                conn.request(method, self._base + path, body=data, headers=sent)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.drop()
                # A kept-alive connection the server closed fails once; a second failure
                # on a fresh connection means the API is unreachable.
                if attempt == 2:
                    raise Unavailable(f"API unreachable: {exc}") from exc
        if resp.getheader("Connection", "").lower() == "close":
            self.drop()
        if resp.status >= 500 or resp.status == 429:
            raise Unavailable(f"API answered {resp.status} on {method} {path}")
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            raise Unavailable(f"API answered non-JSON ({resp.status}) on {path}") from None

    def token(self) -> str:
        """A valid token: the one given, or a fresh login's (renewed at 80% of its life)."""
        with self._token_lock:
            if self._token and time.monotonic() < self._token_renew_at:
                return self._token
            if self._fixed_token is not None:
                raise Unauthorized(f"{self._what}: the token given was refused")
            status, body = self.send(
                "POST",
                "/auth/login",
                {"username": self._username, "password": self._password},
                None,
            )
            if status != 200:
                raise ConfigError(f"{self._what}: login as {self._username!r} refused ({status})")
            self._token = str(body["access_token"])
            self._token_renew_at = time.monotonic() + 0.8 * float(body.get("expires_in", 3600))
            return self._token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int, Any]:
        """An authenticated request; a 401 (revoked or clock-skewed token) logs in again,
        once."""
        status, reply = self.send(
            method, path, body, self.token(), headers=headers, timeout_s=timeout_s
        )
        if status == 401:
            with self._token_lock:
                self._token = None
                self._token_renew_at = 0.0
            status, reply = self.send(
                method, path, body, self.token(), headers=headers, timeout_s=timeout_s
            )
        return status, reply
