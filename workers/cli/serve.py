"""``dtq api``: serve the Chalice app over HTTP, as ``chalice local`` does, but fit for
the local stack and the compose file.

- One thread per connection (Chalice's own threaded server), with TCP_NODELAY: without
  it a keep-alive client waits ~40 ms per request (Nagle meets delayed ACK).
- The edge speaks the API's error shape too: unknown routes, oversized or chunked
  bodies and malformed requests never show Chalice's or http.server's own bodies.
- A body over the limit is refused from its Content-Length, before it is read.
- The recorder runs in this process as well, so the record keeps up even when only the
  API runs.
- SIGTERM / SIGINT: stop accepting, finish the requests in flight, flush, exit 0.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import signal
import socket
import threading
from typing import Any

from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    LocalChalice,
    LocalGatewayException,
    ThreadedHTTPServer,
)

from workers.heap import freeze_startup_heap

log = logging.getLogger("dtq.api")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("api", help="serve the HTTP API (threaded, keep-alive)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.set_defaults(func=cmd_api)


def _error_bytes(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "details": []}}).encode()


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


class Handler(ChaliceRequestHandler):
    disable_nagle_algorithm = True
    #: Set from the settings at startup.
    max_body_bytes = 16 * 1024 * 1024

    def _reply(self, status: int, code: str, message: str, *, close: bool = False) -> None:
        body = _error_bytes(code, message)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            # The unread body would be taken for the next request: end the connection.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _generic_handle(self) -> None:
        if "transfer-encoding" in self.headers:
            self._reply(411, "length_required", "send the body with a Content-Length", close=True)
            return
        raw = self.headers.get("content-length", "0")
        if not raw.isdigit():
            self._reply(400, "invalid_json", "invalid Content-Length", close=True)
            return
        if int(raw) > self.max_body_bytes:
            message = f"the body is larger than {self.max_body_bytes} bytes"
            self._reply(413, "payload_too_large", message, close=True)
            return
        try:
            with IN_FLIGHT:
                super()._generic_handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            log.exception("unhandled error serving %s %s", self.command, self.path)
            self._reply(500, "internal_error", "internal error", close=True)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle
    # Answered 405 (with Allow) by the app, like any method a route does not have.
    do_TRACE = do_CONNECT = _generic_handle

    def _send_error_response(self, error: LocalGatewayException) -> None:
        # The local gateway's only errors are for paths that match no route.
        self._reply(404, "not_found", "no such resource")

    def _send_http_response_with_body(self, code: int, headers: Any, body: Any) -> None:
        if self.command == "HEAD":
            self._send_http_response_no_body(code, headers)
            return
        super()._send_http_response_with_body(code, headers, body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if code == 501 and self.request_version != "HTTP/0.9":
            # A method with no do_<METHOD>: the app answers it (405 with Allow, or 404).
            self._generic_handle()
            return
        # http.server's own answers (malformed request line, unknown method…) as JSON.
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


class Server(ThreadedHTTPServer):
    #: The default backlog of 5 drops connections under a burst of clients.
    request_queue_size = 1024


def make_server(app: Any, host: str, port: int, max_body_bytes: int) -> Server:
    """A threaded HTTP server for ``app`` (not yet serving)."""
    # What chalice.local.create_local_server does: give the app thread-local requests.
    if not isinstance(app, LocalChalice):
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice
    config = Config(chalice_stage="dev", config_from_disk={"app_name": "dtq"})
    handler = type("DTQHandler", (Handler,), {"max_body_bytes": max_body_bytes})
    return Server((host, port), functools.partial(handler, app_object=app, config=config))


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
    host, port = server.server_address[:2]
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
