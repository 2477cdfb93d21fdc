"""``dtq api``'s edge: app.py's routes served by ``workers/cli/serve.py`` over real TCP,
dispatched straight to the views by ``workers/edge.py``, on the test's Redis and
PostgreSQL.

Two kinds of test. Differential ones send the same requests through the edge and
through chalice.local's gateway (what ``dtq api`` ran before, and what
``chalice.test.Client`` still runs), and want the same status, headers and body. The
others talk HTTP to a server made by ``make_server`` in a thread of the test: routing,
errors, HEAD, limits, malformed requests, keep-alive, draining.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from chalice import (  # type: ignore[attr-defined]
    BadRequestError,
    Chalice,
    ChaliceUnhandledError,
    CORSConfig,
    Response,
)
from chalice.app import AuthResponse
from chalice.config import Config
from chalice.local import LocalGateway, LocalGatewayException, RouteMatcher
from hypothesis import HealthCheck, event, given
from hypothesis import settings as examples
from hypothesis import strategies as st

import app as app_module
from chalicelib.api.dashboard import bundle
from chalicelib.api.web import Web
from tests.api.conftest import ADMIN_PASSWORD, WORKER_PASSWORD
from tests.helpers import wait_until
from workers.cli import serve
from workers.edge import Answer, Edge, Router

#: The edge's body limit in these tests (the app's own limit stays the settings').
MAX_BODY = 64 * 1024
JSON_TYPE = {"Content-Type": "application/json"}


# -- the two dispatchers, side by side -------------------------------------------------


def via_gateway(app: Chalice, method: str, path: str, headers: dict[str, str], body: bytes | None):
    """chalice.local's answer, as its request handler put it on the wire (status,
    headers, body bytes), or None for a path with no route."""
    gateway = LocalGateway(app, Config(chalice_stage="dev", config_from_disk={"app_name": "t"}))
    try:
        response = gateway.handle_request(method, path, dict(headers), body)
    except LocalGatewayException:
        return None
    out = {**response["headers"], **response["multiValueHeaders"]}
    raw = response["body"]
    if response.get("isBase64Encoded"):
        raw = base64.b64decode(raw)
    elif isinstance(raw, str):
        raw = raw.encode("utf-8")
    return Answer(response["statusCode"], out, raw)


def via_edge(app: Chalice, method: str, path: str, headers: dict[str, str], body: bytes | None):
    lower: dict[str, str] = {}
    for name, value in headers.items():
        lower.setdefault(name.lower(), value)
    return Edge(app).dispatch(method, path, lower, body)


def assert_same(
    app: Chalice, requests: list[tuple[str, str, dict[str, str], bytes | None]]
) -> list[Answer | None]:
    """Each request through both; the answers (the same), in order."""
    answers = []
    for method, path, headers, body in requests:
        expected = via_gateway(app, method, path, headers, body)
        got = via_edge(app, method, path, headers, body)
        assert (got is None) == (expected is None), (method, path, headers)
        if got is not None and expected is not None:
            # The same headers in the same order, the same bytes.
            assert got.status == expected.status, (method, path, got, expected)
            assert list(got.headers.items()) == list(expected.headers.items()), (method, path)
            assert got.body == expected.body, (method, path)
        answers.append(got)
    return answers


# -- DTQ's app through both ------------------------------------------------------------


def test_answers_as_chalice_local_does(api: Web, admin_token: str, worker_token: str) -> None:
    app = app_module.app
    admin = {"Authorization": f"Bearer {admin_token}", **JSON_TYPE}
    worker = {"authorization": f"Bearer {worker_token}"}
    asset = next(iter(bundle().assets))
    unknown = "0190aa2e-2f39-7cc3-8d6c-0a2b3c4d5e6f"
    requests: list[tuple[str, str, dict[str, str], bytes | None]] = [
        ("GET", "/openapi.json", {}, None),
        ("GET", "/dashboard", {}, None),
        ("GET", f"/dashboard/static/{asset}", {"Accept": "*/*"}, None),
        ("GET", "/dashboard/static/missing.js", {}, None),
        ("GET", "/tasks?limit=5", admin, None),
        ("GET", "/tasks/?limit=5", admin, None),  # one trailing slash is dropped
        ("GET", "/tasks?status=queued&status=dead", admin, None),  # multi-valued
        ("GET", "/tasks?queue=&limit=2", admin, None),  # a blank value is kept
        ("GET", "/tasks?bogus", admin, None),
        ("GET", f"/tasks/{unknown}", admin, None),
        ("GET", f"/tasks/{unknown}", worker, None),  # no X-Lease-Token
        ("GET", f"/tasks/{unknown}", {**worker, "X-LEASE-TOKEN": "w:1"}, None),
        ("GET", "/tasks/not-a-uuid;x=1", admin, None),
        ("GET", "/queues/a%3Ab", admin, None),  # path parameters arrive decoded
        ("GET", "/tasks", {}, None),  # no token
        ("GET", "/tasks", {"Authorization": "Bearer forged"}, None),
        ("GET", "/tasks", worker, None),  # the wrong role
        ("GET", "/tasks/claim", worker, None),  # a literal route, not /tasks/{id}
        ("DELETE", "/tasks", admin, None),
        ("FOO", "/tasks", admin, None),
        ("OPTIONS", "/tasks", {}, None),
        ("POST", "/tasks", {**admin, "Content-Type": "text/plain"}, b"x"),
        ("POST", "/tasks", admin, b"{"),
        ("POST", "/tasks", admin, None),
        ("POST", "/tasks", admin, b'{"name": ""}'),
        ("POST", "/auth/login", JSON_TYPE, b'{"username": "admin", "password": "wrong"}'),
        ("PUT", "/auth/login", JSON_TYPE, b"{}"),
        ("GET", "http://elsewhere/openapi.json", {}, None),
        ("GET", "/no/such/route", admin, None),
        ("GET", "/", {}, None),
        ("GET", "http://[::1/x", {}, None),  # urlparse refuses it: no route
    ]
    assert_same(app, requests)


#: Routes whose answers change between two identical calls (health's latencies, the
#: metrics' counts, the timeline's minutes) or that wait (the long poll).
RESTLESS = {"health", "metrics", "stats", "wait"}
#: Segments for generated requests: the other routes' literals, and a few more.
CALM = sorted(
    {part for resource in app_module.app.routes for part in resource.split("/") if "{" not in part}
    - RESTLESS
    | {"0190aa2e-2f39-7cc3-8d6c-0a2b3c4d5e6f", "x", "a%2Fb", ""}
)
VIEWS = sorted(
    (method, resource)
    for resource, views in app_module.app.routes.items()
    if not RESTLESS & set(resource.split("/"))
    for method in views
)


def fill(view: tuple[tuple[str, str], str]) -> tuple[str, str]:
    """(method, route) and a segment → (method, the route with the segment as each
    parameter)."""
    (method, resource), segment = view
    return method, re.sub(r"\{[a-z]+\}", segment, resource)


# The fixtures hold for every example: the two dispatchers share them, in turn.
@examples(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method_path=st.one_of(
        # A view of app.py, its parameters filled in (two times in three)...
        st.tuples(st.sampled_from(VIEWS), st.sampled_from(CALM)).map(fill),
        st.tuples(st.sampled_from(VIEWS), st.sampled_from(CALM)).map(fill),
        # ...or any method on any path made of the routes' words.
        st.tuples(
            st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "FOO"]),
            st.lists(st.sampled_from(CALM), min_size=1, max_size=4).map(
                lambda s: "/" + "/".join(s)
            ),
        ),
    ),
    query=st.lists(
        st.tuples(
            st.sampled_from(["limit", "queue", "status", "x"]),
            st.sampled_from(["", "1", "a", "queued"]),
        ),
        max_size=3,
    ),
    content_type=st.sampled_from([None, "application/json", "text/plain", "application/x+json"]),
    accept=st.sampled_from([None, "*/*", "image/png", "application/json"]),
    token=st.sampled_from(["admin", "worker", "none"]),
    body=st.sampled_from([None, b"", b"{", b"{}", b"[]", b'{"name": ""}', b'{"queues": []}']),
)
def test_generated_requests_answer_as_chalice_local_does(
    api: Web,
    admin_token: str,
    worker_token: str,
    method_path: tuple[str, str],
    query: list[tuple[str, str]],
    content_type: str | None,
    accept: str | None,
    token: str,
    body: bytes | None,
) -> None:
    method, path = method_path
    if query:
        path += "?" + "&".join(f"{k}={v}" for k, v in query)
    headers = {"Content-Type": content_type, "Accept": accept}
    headers["Authorization"] = {
        "admin": f"Bearer {admin_token}",
        "worker": f"Bearer {worker_token}",
        "none": None,
    }[token]
    sent = {k: v for k, v in headers.items() if v is not None}
    answer = assert_same(app_module.app, [(method, path, sent, body)])[0]
    event(f"status {answer.status if answer else 'no route'}")


# -- Chalice's own features, which DTQ's app does not use ------------------------------


def small_app() -> Chalice:
    app = Chalice(app_name="edge-test")
    app.api.binary_types.append("application/x-edge")

    @app.middleware("http")
    def mark(event: Any, get_response: Any) -> Any:
        response = get_response(event)
        response.headers["X-Route"] = f"{event.method} {event.path}"
        return response

    @app.route(
        "/items/{a}/{b}",
        methods=["GET", "PUT"],
        cors=True,
        content_types=["application/json", "application/x-edge"],
    )
    def item(a: str, b: str) -> Any:
        request = app.current_request
        return {
            "a": a,
            "b": b,
            "query": request.query_params
            and {k: request.query_params.getlist(k) for k in request.query_params},
            "agent": request.headers.get("user-agent"),
            "body": request.raw_body.decode(),
            "context": request.context["resourcePath"],
        }

    @app.route("/items/fixed/{b}", methods=["GET"])
    def fixed(b: str) -> Any:
        return {"fixed": b}

    @app.route(
        "/cors", methods=["GET"], cors=CORSConfig(allow_origin="https://a.example", max_age=60)
    )
    def cors() -> Any:
        return Response(
            body="plain", headers={"Content-Type": "text/plain", "Set-Cookie": ["a=1", "b=2"]}
        )

    @app.route("/blob", methods=["GET"])
    def blob() -> Any:
        return Response(body=b"\x00\x01\xff", headers={"Content-Type": "application/x-edge"})

    @app.route("/options", methods=["OPTIONS", "GET"])
    def options() -> Any:
        return Response(body="", status_code=204, headers={"X-Own": "1"})

    @app.route("/json-only", methods=["POST"], content_types=["application/json"])
    def json_only() -> Any:
        return {"ok": True}

    @app.route("/refused", methods=["GET"])
    def refused() -> Any:
        raise BadRequestError("no")

    @app.route("/broken", methods=["GET"])
    def broken() -> Any:
        raise RuntimeError("bug")

    @app.route("/unhandled", methods=["GET"])
    def unhandled() -> Any:
        raise ChaliceUnhandledError("to the middleware")

    @app.route("/bad-header", methods=["GET"])
    def bad_header() -> Any:
        return Response(body="", headers={"X-Bad": "a\nb"})

    return app


def test_chalice_features_answer_as_chalice_local_does() -> None:
    requests: list[tuple[str, str, dict[str, str], bytes | None]] = [
        ("GET", "/items/x%20y/2?q=1&q=2&e=", {"User-Agent": "t"}, None),
        ("PUT", "/items/1/2", {"Content-Type": "application/x-edge"}, b"\x00raw"),
        ("PUT", "/items/1/2", {"Content-Type": "text/plain"}, b"x"),
        ("GET", "/items/fixed/2", {}, None),
        ("DELETE", "/items/1/2", {}, None),
        ("OPTIONS", "/items/1/2", {}, None),  # the gateway's preflight, with CORS
        ("OPTIONS", "/items/fixed/2", {}, None),  # no CORS there
        ("OPTIONS", "/options", {}, None),  # the app's own OPTIONS view
        ("GET", "/cors", {}, None),
        ("GET", "/blob", {"Accept": "application/x-edge"}, None),
        ("GET", "/blob", {}, None),  # a binary answer nobody asked for: 400
        ("POST", "/json-only", {"Content-Type": "text/plain"}, b"x"),
        ("POST", "/json-only", {}, b"{}"),
        ("GET", "/refused", {}, None),
        ("GET", "/broken", {}, None),
        ("GET", "/unhandled", {}, None),
        ("GET", "/bad-header", {}, None),
    ]
    assert_same(small_app(), requests)


def test_an_api_gateway_authorizer_is_refused_not_skipped() -> None:
    app = Chalice(app_name="edge-auth")

    @app.authorizer()
    def auth(request: Any) -> AuthResponse:
        return AuthResponse(routes=["*"], principal_id="p")

    @app.route("/secret", authorizer=auth)
    def secret() -> Any:
        return {}

    with pytest.raises(ValueError, match="authorizer"):
        Edge(app)


# -- routes, as chalice.local matches them ----------------------------------------------

#: Path segments to build paths from: every literal of app.py's routes, and others.
SEGMENTS = sorted(
    {part for resource in app_module.app.routes for part in resource.split("/") if "{" not in part}
    | {"x", "0190aa2e-2f39-7cc3-8d6c-0a2b3c4d5e6f", "a%2Fb", "a;b=1", "?q=1", ";p", "", "{id}"}
)


@examples(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=5), st.booleans())
def test_routes_match_as_chalice_local_matches_them(segments: list[str], slash: bool) -> None:
    resources = list(app_module.app.routes)
    path = "/" + "/".join(segments) + ("/" if slash else "")
    try:
        stock = RouteMatcher(resources).match_route(path)
    except ValueError:
        stock = None
    got = Router(resources).match(path)
    if stock is None:
        assert got is None
        return
    assert got is not None and got.resource == stock.route
    # Chalice's matcher also keeps what routes tried before it captured; the views
    # only ever see their own parameters.
    assert got.captured == {name: stock.captured[name] for name in got.captured}
    assert got.query == stock.query_params


# -- header lines, as http.server reads them -------------------------------------------


@pytest.mark.parametrize(
    "block",
    [
        b"Host: a\r\nContent-Length: 2\r\n\r\n",
        b"Host: a\nX-A:b\n\n",  # LF only, no blank after the colon
        b"X-A: b  \r\nX-B:\t c\r\nX-C:\r\n\r\n",  # trailing blanks kept, leading dropped
        b"X-A: 1\r\nx-a: 2\r\nX-A: 3\r\n\r\n",  # the first of a repeated name
        b"X-A: caf\xe9\r\n\r\n",  # latin-1
        b"X-A: one\r\n two\r\nX-B: 3\r\n\r\n",  # a folded line
        b"X-A: a\rb\r\nX-B: 3\r\n\r\n",  # a bare CR splits the line
        b"Bad Name: 1\r\nX-B: 2\r\n\r\n",  # not a field: the headers end there
        b"From someone\r\nX-B: 2\r\n\r\n",
        b": empty name\r\nX-B: 2\r\n\r\n",
        b" X-A: leading blank\r\nX-B: 2\r\n\r\n",
        b"X-A: 1\r\n",  # the connection ended before the blank line
        b"\r\n",
    ],
)
def test_header_fields_read_as_http_server_reads_them(block: bytes) -> None:
    stock = dict(http.client.parse_headers(io.BytesIO(block)))
    expected: dict[str, str] = {}
    for name, value in stock.items():
        expected.setdefault(name.lower(), value)
    assert serve.read_fields(io.BytesIO(block)) == expected


def test_header_limits_are_http_clients() -> None:
    with pytest.raises(http.client.LineTooLong):
        serve.read_fields(io.BytesIO(b"X-A: " + b"a" * 70_000 + b"\r\n\r\n"))
    with pytest.raises(http.client.HTTPException, match="more than 100"):
        serve.read_fields(io.BytesIO(b"X-A: 1\r\n" * 101 + b"\r\n"))


# -- a real server in this process -----------------------------------------------------


@dataclass
class Live:
    server: serve.Server
    port: int
    admin: str
    worker: str

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        own = conn is None
        c = conn or self.connect()
        sent = {**JSON_TYPE, **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        c.request(method, path, data, sent)
        response = c.getresponse()
        raw = response.read()
        if own:
            c.close()
        return response, raw

    def raw(self, data: bytes, *, method: str = "GET") -> tuple[http.client.HTTPResponse, bytes]:
        """``data`` as sent, byte for byte, and the answer read back."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(data)
            response = http.client.HTTPResponse(sock, method=method)
            response.begin()
            return response, response.read()


def login(port: int, username: str, password: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"username": username, "password": password})
    try:
        conn.request("POST", "/auth/login", body, JSON_TYPE)
        response = conn.getresponse()
        assert response.status == 200
        return str(json.loads(response.read())["access_token"])
    finally:
        conn.close()


@pytest.fixture
def live(api: Web) -> Iterator[Live]:
    server = serve.make_server(app_module.app, "127.0.0.1", 0, MAX_BODY)
    serving = threading.Thread(target=server.serve_forever, name="edge-test", daemon=True)
    serving.start()
    port = server.socket.getsockname()[1]
    try:
        yield Live(
            server,
            port,
            login(port, "admin", ADMIN_PASSWORD),
            login(port, "worker", WORKER_PASSWORD),
        )
    finally:
        server.shutdown()
        server.server_close()
        serving.join(timeout=10)


def error_of(response: http.client.HTTPResponse, raw: bytes, status: int, code: str) -> Any:
    """The API's error shape, exactly."""
    assert response.status == status, raw
    assert response.getheader("Content-Type") == "application/json"
    body = json.loads(raw)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    return body["error"]


def test_routes_path_parameters_and_query_strings(live: Live) -> None:
    response, raw = live.call(
        "POST", "/tasks", {"name": "edge.a", "queue": "edge", "payload": {"n": 1}}, token=live.admin
    )
    assert response.status == 201, raw
    task = json.loads(raw)
    assert response.getheader("Content-Type") == "application/json"
    assert response.getheader("Content-Length") == str(len(raw))
    assert response.getheader("Server", "").startswith("BaseHTTP/")
    assert response.getheader("Date", "").endswith(" GMT")
    for path in (f"/tasks/{task['id']}", f"/tasks/{task['id']}/"):
        response, raw = live.call("GET", path, token=live.admin)
        assert response.status == 200 and json.loads(raw)["payload"] == {"n": 1}
    response, raw = live.call("GET", "/tasks?queue=edge&name=edge.a&limit=5", token=live.admin)
    assert [t["id"] for t in json.loads(raw)["tasks"]] == [task["id"]]
    error = error_of(
        *live.call("GET", "/tasks?queue=edge&queue=other", token=live.admin),
        400,
        "validation_error",
    )
    assert error["details"] == [{"field": "queue", "message": "must be given once"}]
    error = error_of(*live.call("GET", "/tasks?queue=", token=live.admin), 400, "validation_error")
    assert error["details"][0]["field"] == "queue"
    response, raw = live.call("GET", "/queues/edge", token=live.admin)
    assert response.status == 200 and json.loads(raw)["name"] == "edge"
    response, raw = live.call("POST", f"/tasks/{task['id']}/cancel", token=live.admin)
    assert response.status in (200, 202)


def test_lease_token_and_header_names_in_any_case(live: Live) -> None:
    response, raw = live.call(
        "POST", "/tasks", {"name": "edge.b", "queue": "edge-lease"}, token=live.admin
    )
    task_id = json.loads(raw)["id"]
    claim = {"worker_id": "edge-worker", "queues": ["edge-lease"], "max": 1}
    response, raw = live.call("POST", "/tasks/claim", claim, token=live.worker)
    [lease] = json.loads(raw)["tasks"]
    assert lease["id"] == task_id
    path = f"/tasks/{task_id}"
    for name in ("X-Lease-Token", "x-lease-token", "X-LEASE-TOKEN"):
        response, raw = live.call(
            "GET",
            path,
            headers={name: lease["lease_token"], "AUTHORIZATION": f"Bearer {live.worker}"},
        )
        assert response.status == 200 and json.loads(raw)["id"] == task_id
    error_of(
        *live.call("GET", path, token=live.worker, headers={"X-Lease-Token": "someone:1"}),
        403,
        "forbidden",
    )
    error_of(*live.call("GET", path, token=live.worker), 403, "forbidden")


def test_auth_failures(live: Live) -> None:
    error_of(*live.call("GET", "/tasks"), 401, "unauthorized")
    error_of(*live.call("GET", "/tasks", token="not.a.token"), 401, "unauthorized")
    error_of(
        *live.call("GET", "/tasks", headers={"Authorization": "Basic eDp5"}), 401, "unauthorized"
    )
    error_of(*live.call("GET", "/tasks", token=live.worker), 403, "forbidden")
    bad = {"username": "admin", "password": "wrong"}
    error_of(*live.call("POST", "/auth/login", bad), 401, "unauthorized")


def test_errors_in_the_api_shape(live: Live) -> None:
    error_of(*live.call("GET", "/no/such/route", token=live.admin), 404, "not_found")
    error_of(*live.call("GET", "/tasks/not-a-uuid", token=live.admin), 404, "not_found")
    for method in ("DELETE", "PUT", "FOO"):  # FOO: http.server would say 501
        response, raw = live.call(method, "/tasks", token=live.admin)
        error_of(response, raw, 405, "method_not_allowed")
        assert response.getheader("Allow") == "POST, GET"
    headers = {"Content-Type": "text/plain"}
    error_of(
        *live.call("POST", "/tasks", "x", token=live.admin, headers=headers),
        415,
        "unsupported_media_type",
    )
    error_of(*live.call("POST", "/tasks", token=live.admin), 400, "invalid_json")


def test_head_answers_without_a_body_and_keeps_the_connection(live: Live) -> None:
    conn = live.connect()
    # No route has a HEAD view: the app's 405, its headers, no body, a length of 0.
    conn.request("HEAD", "/health")
    response = conn.getresponse()
    assert response.status == 405 and response.read() == b""
    assert response.getheader("Allow") == "GET"
    assert response.getheader("Content-Length") == "0"
    # The edge's own answers keep their length.
    conn.request("HEAD", "/no/such/route")
    response = conn.getresponse()
    assert response.status == 404 and response.read() == b""
    assert int(response.getheader("Content-Length", "0")) > 0
    response, raw = live.call("GET", "/health", conn=conn)
    assert response.status == 200 and json.loads(raw)["status"] == "ok"
    conn.close()


def test_the_body_limit_is_read_from_content_length(live: Live) -> None:
    # No body follows: an answer proves the server did not wait to read it.
    head = (
        b"POST /tasks HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {live.admin}\r\nContent-Length: {10 * MAX_BODY}\r\n\r\n".encode()
    )
    response, raw = live.raw(head)
    error_of(response, raw, 413, "payload_too_large")
    assert response.getheader("Connection") == "close"
    body = json.dumps({"name": "edge.limit", "payload": {"pad": "x" * 1000}}).encode()
    response, raw = live.call("POST", "/tasks", json.loads(body), token=live.admin)
    assert response.status == 201


def test_chunked_bodies_and_bad_lengths_are_refused(live: Live) -> None:
    chunked = (
        b"POST /tasks HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    response, raw = live.raw(chunked)
    error_of(response, raw, 411, "length_required")
    assert response.getheader("Connection") == "close"
    for length in (b"abc", b"-1", "²".encode("latin-1")):
        response, raw = live.raw(
            b"POST /tasks HTTP/1.1\r\nHost: t\r\nContent-Length: " + length + b"\r\n\r\n"
        )
        error_of(response, raw, 400, "invalid_json")


def test_malformed_requests(live: Live) -> None:
    response, raw = live.raw(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
    error_of(response, raw, 414, "uri_too_long")
    response, raw = live.raw(b"GET /health HTTP/1.1\r\nX-A: " + b"a" * 70_000 + b"\r\n\r\n")
    error_of(response, raw, 431, "headers_too_large")
    response, raw = live.raw(b"GET /health HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n")
    error_of(response, raw, 431, "headers_too_large")
    # A request line http.server cannot read gets its answer without a status line
    # (it takes the request for HTTP/0.9): the API's error body alone.
    for line in (b"GET / HTTP/9.9\r\n\r\n", b"GET / HTTP/x\r\n\r\n", b"POST /tasks\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
            sock.sendall(line)
            received = b"".join(iter(lambda: sock.recv(65536), b""))
        assert json.loads(received)["error"]["code"] == "bad_request"


def test_dashboard_page_and_asset(live: Live) -> None:
    response, raw = live.call("GET", "/dashboard", headers={"Accept": "text/html"})
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    assert response.getheader("Cache-Control") == "no-cache"
    assert "default-src 'self'" in response.getheader("Content-Security-Policy", "")
    names = re.findall(r"dashboard/static/([A-Za-z0-9_.-]+)", raw.decode())
    assert names
    for name in names:
        response, raw = live.call("GET", f"/dashboard/static/{name}")
        assert response.status == 200
        asset = bundle().assets[name]
        assert response.getheader("Content-Type") == asset.content_type
        assert response.getheader("Cache-Control") == "public, max-age=31536000, immutable"
        assert response.getheader("X-Content-Type-Options") == "nosniff"
        assert raw == asset.body.encode("utf-8")
    error_of(*live.call("GET", "/dashboard/static/nope.js"), 404, "not_found")


def test_keep_alive_connection_close_and_expect_continue(live: Live) -> None:
    conn = live.connect()
    sockets = set()
    for _ in range(3):
        response, _raw = live.call("GET", "/openapi.json", conn=conn)
        assert response.status == 200
        assert conn.sock is not None
        sockets.add(conn.sock.getsockname())
    assert len(sockets) == 1  # one connection for the three
    conn.close()
    for request in (
        b"GET /openapi.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /openapi.json HTTP/1.0\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
            sock.sendall(request)
            # The server ends the connection after its answer: recv reaches the end.
            received = b"".join(iter(lambda: sock.recv(65536), b""))
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    body = json.dumps({"name": "edge.continue"}).encode()
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        head = (
            "POST /tasks HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {live.admin}\r\nExpect: 100-continue\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode())
        assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
        assert response.status == 201 and json.loads(response.read())["name"] == "edge.continue"


def test_shutdown_lets_requests_in_flight_finish(live: Live) -> None:
    answers: list[int] = []

    def long_poll() -> None:
        body = {"queues": ["edge-idle"], "timeout_seconds": 1.5}
        response, _raw = live.call("POST", "/tasks/wait", body, token=live.worker)
        answers.append(response.status)

    caller = threading.Thread(target=long_poll)
    caller.start()
    wait_until(lambda: serve.IN_FLIGHT.count == 1, 10, "the long poll to be in flight")
    live.server.shutdown()  # as cmd_api on SIGTERM: stop accepting, then wait
    assert serve.IN_FLIGHT.wait_idle(10)
    caller.join(timeout=10)
    assert answers == [200]
