"""The app under test: app.py's routes served from the test's own Services.

``web.use(services)`` is the app's one hook for this, so no test patches anything.
Users are created with a cheap scrypt cost (log_n=10) to keep logins fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.api import web
from chalicelib.api.web import Web
from chalicelib.core import passwords
from chalicelib.service.deps import Services

ADMIN_PASSWORD = "admin-password-1"
WORKER_PASSWORD = "worker-password-1"


@pytest.fixture
def api(services: Services) -> Iterator[Web]:
    context = web.use(services)
    assert context is not None
    services.store.upsert_user("admin", passwords.hash_password(ADMIN_PASSWORD, log_n=10), "admin")
    services.store.upsert_user(
        "worker", passwords.hash_password(WORKER_PASSWORD, log_n=10), "worker"
    )
    yield context
    web.use(None)


class Http:
    """The Chalice test client with JSON helpers and a default token."""

    def __init__(self, client: Client, token: str | None = None) -> None:
        self.client = client
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        sent = {"Content-Type": "application/json"}
        bearer = token if token is not None else self.token
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        sent.update(headers or {})
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        return self.client.http.request(method, path, headers=sent, body=data)

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("POST", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("PATCH", path, body, **kw)


def login(http: Http, username: str, password: str) -> str:
    r = http.post("/auth/login", {"username": username, "password": password}, token="")
    assert r.status_code == 200, r.body
    return str(r.json_body["access_token"])


@pytest.fixture
def client(api: Web) -> Iterator[Client]:
    with Client(app_module.app) as c:
        yield c


@pytest.fixture
def anon(client: Client) -> Http:
    return Http(client)


@pytest.fixture
def admin_token(anon: Http) -> str:
    return login(anon, "admin", ADMIN_PASSWORD)


@pytest.fixture
def worker_token(anon: Http) -> str:
    return login(anon, "worker", WORKER_PASSWORD)


@pytest.fixture
def admin(client: Client, admin_token: str) -> Http:
    return Http(client, admin_token)


@pytest.fixture
def worker(client: Client, worker_token: str) -> Http:
    return Http(client, worker_token)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The documented error shape, exactly."""
    assert response.status_code == status, response.body
    body = response.json_body
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    return dict(body["error"])
