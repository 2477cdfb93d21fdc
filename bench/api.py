"""``POST /tasks`` and ``POST /tasks/batch`` against a real ``dtq api`` process."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from typing import Any

from bench import procs

USER = "bench-admin"


class ApiServer:
    """``dtq api --port 0`` with a bench admin user; the token of one login."""

    def __init__(self, env: dict[str, str], store: Any, log_path: str) -> None:
        from chalicelib.core import passwords

        password = secrets.token_urlsafe(16)
        store.upsert_user(USER, passwords.hash_password(password), "admin")
        dtq = os.path.join(os.path.dirname(sys.executable), "dtq")
        full = {**os.environ, **env, "DTQ_JWT_SECRET": secrets.token_hex(32)}
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [dtq, "api", "--port", "0"],
            env=full,
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("Serving on http://"):
            self.stop()
            raise RuntimeError(f"dtq api did not start (see {log_path}): {line!r}")
        host_port = line.split("//", 1)[1].strip()
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        status, body = self.request("POST", "/auth/login", {"username": USER, "password": password})
        if status != 200:
            self.stop()
            raise RuntimeError(f"login failed: {status} {body!r}")
        self.token = str(body["access_token"])

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(
        self, method: str, path: str, body: Any, conn: http.client.HTTPConnection | None = None
    ) -> tuple[int, Any]:
        own = conn is None
        c = conn or self.connection()
        headers = {"Content-Type": "application/json"}
        if getattr(self, "token", None):
            headers["Authorization"] = f"Bearer {self.token}"
        c.request(method, path, json.dumps(body), headers)
        resp = c.getresponse()
        data = resp.read()
        if own:
            c.close()
        return resp.status, json.loads(data) if data else None

    def rss_bytes(self) -> int:
        return procs.tree_rss_bytes([self.proc])

    def stop(self) -> None:
        procs.stop([self.proc])
        self.log.close()


def post_rate(server: ApiServer, requests: int, threads: int, batch: int) -> float:
    """Tasks/s created through ``POST /tasks`` (``batch`` 0) or ``POST /tasks/batch``,
    each thread on its own keep-alive connection."""
    per_thread = max(1, requests // threads)
    path = "/tasks/batch" if batch else "/tasks"
    body: Any = {"tasks": [{"name": "dtq.noop"}] * batch} if batch else {"name": "dtq.noop"}
    errors: list[str] = []

    def work() -> None:
        conn = server.connection()
        try:
            for _ in range(per_thread):
                status, reply = server.request("POST", path, body, conn)
                if status != 201:
                    errors.append(f"{status} {reply}")
                    return
        finally:
            conn.close()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{path}: {errors[0]}")
    return per_thread * threads * max(1, batch) / elapsed
