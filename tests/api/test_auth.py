"""Login, its rate limit, forged and broken tokens, and role checks on every route."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest

import app as app_module
from chalicelib.api.web import Web
from tests.api.conftest import ADMIN_PASSWORD, Http, assert_error

SECRET = "test-secret-" + "x" * 32
ADMIN_ONLY = [
    ("POST", "/tasks"),
    ("POST", "/tasks/batch"),
    ("GET", "/tasks"),
    ("POST", "/tasks/{id}/cancel"),
    ("POST", "/tasks/{id}/retry"),
    ("GET", "/dead-letter"),
    ("POST", "/dead-letter/replay"),
    ("GET", "/queues"),
    ("GET", "/queues/{name}"),
    ("PATCH", "/queues/{name}"),
    ("GET", "/workers"),
    ("GET", "/stats/timeline"),
]
PUBLIC = [
    ("POST", "/auth/login"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/dashboard"),
    ("GET", "/dashboard/static/{asset}"),
]


def routes() -> list[tuple[str, str]]:
    return [(m, path) for path, methods in app_module.app.routes.items() for m in methods]


def concrete(path: str) -> str:
    return path.replace("{id}", str(uuid.uuid4())).replace("{name}", "default")


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "admin",
        "role": "admin",
        "iat": now,
        "exp": now + 600,
        "iss": "dtq",
        "aud": "dtq-api",
        "jti": uuid.uuid4().hex,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_login_returns_a_bearer_token(anon: Http, api: Web) -> None:
    r = anon.post("/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 200
    body = r.json_body
    assert body["token_type"] == "Bearer" and body["role"] == "admin"
    assert body["expires_in"] == 3600
    assert api.issuer.verify(body["access_token"]).sub == "admin"


def test_unknown_user_and_wrong_password_look_the_same(anon: Http) -> None:
    wrong = assert_error(
        anon.post("/auth/login", {"username": "admin", "password": "nope"}), 401, "unauthorized"
    )
    unknown = assert_error(
        anon.post("/auth/login", {"username": "ghost", "password": "nope"}), 401, "unauthorized"
    )
    assert wrong == unknown
    for bad in (
        {"username": "admin"},
        {"username": "", "password": "x"},
        {"username": "a", "password": "b", "otp": 1},
        {"username": 1, "password": 2},
    ):
        assert_error(anon.post("/auth/login", bad), 400, "validation_error")


def test_failed_logins_are_rate_limited_per_username(anon: Http) -> None:
    for _ in range(5):
        assert anon.post("/auth/login", {"username": "admin", "password": "x"}).status_code == 401
    r = anon.post("/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert_error(r, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 30
    # Another username has its own budget.
    assert anon.post("/auth/login", {"username": "worker", "password": "x"}).status_code == 401


def test_successful_logins_do_not_spend_the_budget(anon: Http) -> None:
    for _ in range(8):
        body = {"username": "admin", "password": ADMIN_PASSWORD}
        assert anon.post("/auth/login", body).status_code == 200


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}.", id="alg-none"),
        pytest.param(jwt.encode(claims(), "w" * 40, algorithm="HS256"), id="wrong-key"),
        pytest.param(jwt.encode(claims(exp=int(time.time()) - 5), SECRET), id="expired"),
        pytest.param(jwt.encode(claims(exp=None), SECRET), id="missing-exp"),
        pytest.param(jwt.encode(claims(aud=None), SECRET), id="missing-aud"),
        pytest.param(jwt.encode(claims(iss=None), SECRET), id="missing-iss"),
        pytest.param(jwt.encode(claims(jti=None), SECRET), id="missing-jti"),
        pytest.param(jwt.encode(claims(aud="other"), SECRET), id="wrong-aud"),
        pytest.param(jwt.encode(claims(iss="other"), SECRET), id="wrong-iss"),
        pytest.param(jwt.encode(claims(role="root"), SECRET), id="unknown-role"),
        pytest.param("not.a.jwt", id="garbage"),
    ],
)
def test_bad_tokens_are_401(anon: Http, token: str) -> None:
    assert_error(anon.get("/tasks", token=token), 401, "unauthorized")


def test_reencoded_payload_claiming_admin_is_401(anon: Http, worker: Http) -> None:
    header, payload, signature = str(worker.token).split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["role"] = "admin"
    assert_error(
        anon.get("/tasks", token=f"{header}.{b64(forged)}.{signature}"), 401, "unauthorized"
    )


def test_missing_or_malformed_authorization_is_401(anon: Http, admin: Http) -> None:
    assert_error(anon.get("/tasks"), 401, "unauthorized")
    for value in ("Basic YWRtaW46eA==", "Bearer", f"Token {admin.token}", "Bearer a b"):
        assert_error(anon.get("/tasks", headers={"Authorization": value}), 401, "unauthorized")
    assert anon.get("/tasks", headers={"Authorization": f"bearer {admin.token}"}).status_code == 200


def test_every_route_is_protected_unless_public(anon: Http) -> None:
    for method, path in routes():
        if (method, path) in PUBLIC:
            continue
        assert_error(anon.call(method, concrete(path), {}), 401, "unauthorized")


@pytest.mark.parametrize(("method", "path"), ADMIN_ONLY)
def test_worker_token_on_admin_routes_is_403(worker: Http, method: str, path: str) -> None:
    assert_error(worker.call(method, concrete(path), {"name": "t"}), 403, "forbidden")


def test_route_lists_cover_the_app() -> None:
    worker_routes = {
        ("POST", "/workers/register"),
        ("POST", "/tasks/claim"),
        ("POST", "/tasks/wait"),
        ("POST", "/tasks/{id}/lease"),
        ("POST", "/tasks/{id}/release"),
        ("POST", "/tasks/{id}/progress"),
        ("POST", "/tasks/sync"),
        ("GET", "/tasks/{id}"),
    }
    # /schedules* are covered by the schedule tests.
    mine = {(m, p) for m, p in routes() if not p.startswith("/schedules")}
    assert mine == set(ADMIN_ONLY) | set(PUBLIC) | worker_routes
