"""``dtq api``: serve the Chalice app over HTTP, fit for the local stack and the compose
file. Each request goes straight to its view through :class:`workers.edge.Edge`, which
answers as ``chalice local`` does without building an API Gateway event.

- One thread per connection, with TCP_NODELAY: without it a keep-alive client waits
  ~40 ms per request (Nagle meets delayed ACK).
- The edge speaks the API's error shape too: unknown routes, oversized or chunked
  bodies and malformed requests never show Chalice's or http.server's own bodies.
- A body over the limit is refused from its Content-Length, before it is read.
- The recorder runs in this process as well, so the record keeps up even when only the
  API runs.
- SIGTERM / SIGINT: stop accepting, finish the requests in flight, flush, exit 0.

The protocol is http.server's: its request line rules, status lines, ``Server`` and
``Date`` headers, HTTP/0.9 and ``Expect: 100-continue``. Only two things differ in how,
not in what: the plain ``Name: value`` header lines clients send are read here (the email
package that http.server hands them to cost ≈ 17 µs a request, and still reads any
other line), and an answer leaves in one write.
"""

from __future__ import annotations

import argparse
import email.parser
import email.utils
import http.client
import http.server
import io
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from http import HTTPStatus
from typing import Any

from chalice.local import CustomLocalChalice, LocalChalice

from workers.edge import Answer, Edge
from workers.heap import freeze_startup_heap

log = logging.getLogger("dtq.api")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("api", help="serve the HTTP API (threaded, keep-alive)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.set_defaults(func=cmd_api)


def _error_bytes(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "details": []}}).encode()


# -- reading a request's header fields ------------------------------------------------

#: http.client's limits: the length of a line, the number of lines.
MAX_LINE = 65536
MAX_FIELDS = 100
#: A field line the email package reads as ``name``, ``value`` (RFC 5322's field name,
#: the value with its leading blanks dropped and its line end): nothing else on the line
#: that it would split or read another way (a bare CR, a continuation, ``From ``).
_PLAIN_FIELD = re.compile(rb"([!-9;-~]+):[ \t]*([^\r\n]*)\r?\n\Z")


def read_fields(rfile: io.BufferedIOBase) -> dict[str, str]:
    """A request's header fields, lower-case name → first value, exactly as http.server
    reads them (``http.client.parse_headers``, then ``dict(message)``); raises
    ``http.client.LineTooLong`` or ``HTTPException`` where that does."""
    lines = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_FIELDS:
            raise http.client.HTTPException(f"got more than {MAX_FIELDS} headers")
        if line in (b"\r\n", b"\n", b""):
            break
    fields: dict[str, str] = {}
    for line in lines[:-1]:
        plain = _PLAIN_FIELD.match(line)
        if plain is None:
            return _parsed_fields(lines)
        fields.setdefault(plain[1].lower().decode("ascii"), plain[2].decode("latin-1"))
    return fields


def _parsed_fields(lines: list[bytes]) -> dict[str, str]:
    """The email package's reading, for header lines that are not plain."""
    text = b"".join(lines).decode("iso-8859-1")
    message = email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)
    fields: dict[str, str] = {}
    for name in message.keys():
        fields.setdefault(name.lower(), str(message[name]))
    return fields


# -- writing an answer ----------------------------------------------------------------

_STATUS_LINES = {int(s): f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in HTTPStatus}
_SERVER_LINE = f"Server: {http.server.BaseHTTPRequestHandler.server_version} " + (
    f"{http.server.BaseHTTPRequestHandler.sys_version}\r\n"
)
#: The second and its Date line: one formatdate per second, not per answer.
_date: tuple[int, str] = (0, "")


def _date_line() -> str:
    global _date
    now = int(time.time())
    second, line = _date
    if second != now:
        line = f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n"
        _date = (now, line)
    return line


class _InFlight:
    """Requests being handled, so that shutdown can let them finish."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def __enter__(self) -> None:
        with self.changed:
            self.count += 1

    def __exit__(self, *exc: object) -> None:
        with self.changed:
            self.count -= 1
            self.changed.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count == 0, timeout_s)


IN_FLIGHT = _InFlight()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    #: Set from the settings at startup.
    max_body_bytes = 16 * 1024 * 1024
    #: Set by make_server.
    edge: Edge
    #: The request's header fields (read_fields).
    fields: dict[str, str]

    def handle_one_request(self) -> None:
        # http.server's, except that every method goes to the app, which answers the
        # ones a path does not take with 405 and Allow (http.server: 501).
        try:
            self.raw_requestline = self.rfile.readline(MAX_LINE + 1)
            if len(self.raw_requestline) > MAX_LINE:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if self.parse_request():
                self._generic_handle()
        except TimeoutError as e:
            self.log_error("Request timed out: %r", e)
            self.close_connection = True

    def parse_request(self) -> bool:
        # http.server's, with read_fields for the header lines.
        if not self._parse_request_line():
            return False
        try:
            self.fields = read_fields(self.rfile)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err)
            )
            return False
        connection = self.fields.get("connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        expect = self.fields.get("expect", "")
        if expect.lower() == "100-continue" and self.request_version >= "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def _parse_request_line(self) -> bool:
        """http.server's reading of the request line (Python 3.11), as it is."""
        self.command = None  # type: ignore[assignment]
        self.request_version = version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            number = _version_number(version)
            if number is None:
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if number >= (1, 1):
                self.close_connection = False
            if number >= (2, 0):
                invalid = f"Invalid HTTP version ({version.split('/', 1)[1]})"
                self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, invalid)
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({self.requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):  # gh-87389: no open redirects
            self.path = "/" + self.path.lstrip("/")
        return True

    def _generic_handle(self) -> None:
        if "transfer-encoding" in self.fields:
            self._reply(411, "length_required", "send the body with a Content-Length", close=True)
            return
        raw = self.fields.get("content-length", "0")
        if not (raw.isascii() and raw.isdigit()):
            self._reply(400, "invalid_json", "invalid Content-Length", close=True)
            return
        length = int(raw)
        if length > self.max_body_bytes:
            message = f"the body is larger than {self.max_body_bytes} bytes"
            self._reply(413, "payload_too_large", message, close=True)
            return
        try:
            with IN_FLIGHT:
                body = self.rfile.read(length) if length > 0 else None
                answer = self.edge.dispatch(self.command, self.path, self.fields, body)
                if answer is None:
                    self._reply(404, "not_found", "no such resource")
                else:
                    self._send(answer)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            log.exception("unhandled error serving %s %s", self.command, self.path)
            self._reply(500, "internal_error", "internal error", close=True)

    def _send(self, answer: Answer) -> None:
        """An app's answer, as chalice.local's handler sends it: Content-Length and
        Content-Type (JSON unless the app set one) first; for HEAD or no body, the
        app's headers with a Content-Length of 0."""
        status, headers, body = answer
        if body is None or self.command == "HEAD":
            headers = {**headers, "Content-Length": "0"}
            self._write(status, list(headers.items()), b"")
            return
        rest = dict(headers)
        content_type = rest.pop("Content-Type", "application/json")
        fields = [("Content-Length", str(len(body))), ("Content-Type", content_type)]
        self._write(status, [*fields, *rest.items()], body)

    def _reply(self, status: int, code: str, message: str, *, close: bool = False) -> None:
        body = _error_bytes(code, message)
        fields = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if close:
            # The unread body would be taken for the next request: end the connection.
            fields.append(("Connection", "close"))
        self._write(status, fields, b"" if self.command == "HEAD" else body)

    def _write(self, status: int, fields: list[tuple[str, Any]], body: bytes) -> None:
        """Status line, Server, Date, ``fields`` (a list value: one line each), then the
        body, in one write; an HTTP/0.9 request gets the body alone."""
        self.log_request(status)
        head = [_STATUS_LINES.get(status, f"HTTP/1.1 {status} \r\n"), _SERVER_LINE, _date_line()]
        for name, value in fields:
            for one in value if isinstance(value, list) else (value,):
                head.append(f"{name}: {one}\r\n")
                if name.lower() == "connection":
                    self._connection(str(one))
        if self.request_version == "HTTP/0.9":
            if body:
                self.wfile.write(body)
            return
        head.append("\r\n")
        self.wfile.write("".join(head).encode("latin-1") + body)

    def _connection(self, value: str) -> None:
        if value.lower() == "close":
            self.close_connection = True
        elif value.lower() == "keep-alive":
            self.close_connection = False

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own answers (malformed request line, header lines…) as JSON.
        names = {
            400: "bad_request",
            404: "not_found",
            405: "method_not_allowed",
            414: "uri_too_long",
            431: "headers_too_large",
            501: "not_implemented",
        }
        self._reply(code, names.get(code, "bad_request"), message or "bad request", close=True)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - " + format, self.address_string(), *args)


def _version_number(version: str) -> tuple[int, int] | None:
    """``HTTP/1.1`` → (1, 1); None for what http.server refuses as a version."""
    if version == "HTTP/1.1":
        return (1, 1)
    if not version.startswith("HTTP/"):
        return None
    parts = version.split("/", 1)[1].split(".")
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 10 for p in parts):
        return None
    try:  # isdigit() takes digits int() does not ('²')
        return int(parts[0]), int(parts[1])
    except ValueError:
        return None


class Server(http.server.ThreadingHTTPServer):
    #: The default backlog of 5 drops connections under a burst of clients.
    request_queue_size = 1024


def make_server(app: Any, host: str, port: int, max_body_bytes: int) -> Server:
    """A threaded HTTP server for ``app`` (not yet serving)."""
    # What chalice.local.create_local_server does: give the app thread-local requests.
    if not isinstance(app, LocalChalice):
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice
    attrs = {"max_body_bytes": max_body_bytes, "edge": Edge(app)}
    return Server((host, port), type("DTQHandler", (Handler,), attrs))


def cmd_api(args: argparse.Namespace) -> int:
    from app import app
    from chalicelib.api import web
    from chalicelib.service import deps
    from chalicelib.service.background import Background

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    context = web.current()  # a bad setting fails here, as one line, not per request
    deps.check_redis(context.services)
    settings = context.settings
    server = make_server(app, args.host, args.port, settings.max_body_bytes)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    consumer = f"api:{socket.gethostname()}:{os.getpid()}"
    background = Background(context.services, consumer)
    serving = threading.Thread(target=server.serve_forever, name="dtq-http", daemon=True)
    freeze_startup_heap()
    serving.start()
    background.start(stop)
    host, port = server.socket.getsockname()[:2]
    print(f"Serving on http://{host}:{port}", flush=True)
    stop.wait()
    log.info("shutting down")
    server.shutdown()  # no new connections or requests from here on
    if not IN_FLIGHT.wait_idle(10):
        log.warning("requests still running after 10 s; exiting anyway")
    server.server_close()
    serving.join(timeout=10)
    background.close()
    context.close()
    context.services.close()
    return 0
