"""Bad input: always a 4xx in the documented shape, never a 5xx, nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.core import jsonbody
from chalicelib.core.errors import ValidationError
from chalicelib.service.deps import Services
from tests.api.conftest import Http, assert_error


def nothing_stored(services: Services) -> None:
    assert services.tasks.list()[0] == []
    assert services.queue.known_queues() == []


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"name": "t"', "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b'{"name": "\xc3\x28"}', "invalid_json"),
        (b'{"name": "t", "priority": NaN}', "invalid_json"),
        (b'{"name": "t", "payload": {"x": 1e999}}', "invalid_json"),
        (b'{"name": "t", "priority": ' + b"9" * 5000 + b"}", "invalid_json"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
        (
            b'{"name": "t", "payload": ' + b'{"a":' * 100 + b"1" + b"}" * 100 + b"}",
            "validation_error",
        ),
        (b'{"name": "t", "payload": {"s": "a\\u0000b"}}', "validation_error"),
        (b'{"name": "t", "payload": {"a\\u0000": 1}}', "validation_error"),
        (b'{"name": "t", "payload": {"s": "\\ud800"}}', "validation_error"),
        (b'{"name": "t\\u0000"}', "validation_error"),
        (b'["name"]', "invalid_json"),
        (b'"text"', "invalid_json"),
    ],
)
def test_unparseable_or_unstorable_bodies(
    admin: Http, services: Services, raw: bytes, code: str
) -> None:
    assert_error(admin.post("/tasks", raw=raw), 400, code)
    nothing_stored(services)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": 5}, "name"),
        ({"name": "a b"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "t", "priority": "5"}, "priority"),
        ({"name": "t", "priority": True}, "priority"),
        ({"name": "t", "priority": 10}, "priority"),
        ({"name": "t", "priority": -1}, "priority"),
        ({"name": "t", "max_attempts": 0}, "max_attempts"),
        ({"name": "t", "timeout_seconds": 86401}, "timeout_seconds"),
        ({"name": "t", "payload": []}, "payload"),
        ({"name": "t", "queue": ""}, "queue"),
        ({"name": "t", "delay_seconds": -1}, "delay_seconds"),
        ({"name": "t", "run_at": "tomorrow"}, "run_at"),
        ({"name": "t", "run_at": "2026-01-01T00:00:00"}, "run_at"),
        ({"name": "t", "run_at": "2026-01-01T00:00:00Z", "delay_seconds": 1}, "run_at"),
        ({"name": "t", "run_at": "9999-12-31T23:59:59Z"}, "run_at"),  # stopped the record
        ({"name": "t", "run_at": "0001-01-01T00:00:00+14:00"}, "run_at"),  # was a 500
        ({"name": "t", "backoff": {"factor": 0.5}}, "backoff.factor"),
        ({"name": "t", "backoff": {"jitter": "yes"}}, "backoff.jitter"),
        ({"name": "t", "backoff": {"extra": 1}}, "backoff.extra"),
        ({"name": "t", "idempotency_key": "k" * 201}, "idempotency_key"),
        ({"name": "t", "webhook_url": "ftp://x"}, "webhook_url"),
        ({"name": "t", "webhook_url": "http://["}, "webhook_url"),  # unclosed IPv6 literal
        ({"name": "t", "webhook_url": "http://h:99999/x"}, "webhook_url"),
        ({"name": "t", "webhook_url": "https://"}, "webhook_url"),
        ({"name": "t", "webhook_url": "http://a b/"}, "webhook_url"),
        ({"name": "t", "prority": 1}, "prority"),
    ],
)
def test_invalid_fields_are_named(
    admin: Http, services: Services, body: dict[str, Any], field: str
) -> None:
    error = assert_error(admin.post("/tasks", body), 400, "validation_error")
    assert field in [d["field"] for d in error["details"]], error
    nothing_stored(services)


def test_run_at_beyond_ten_years_is_refused_on_every_path(admin: Http, services: Services) -> None:
    """The batch route and the Python client validate through the same check as
    ``POST /tasks``; nothing of a refused batch is stored."""
    far = "9999-12-31T23:59:59Z"
    batch = {"tasks": [{"name": "ok"}, {"name": "t", "run_at": far}]}
    error = assert_error(admin.post("/tasks/batch", batch), 400, "validation_error")
    assert [d["field"] for d in error["details"]] == ["tasks[1].run_at"], error
    with pytest.raises(ValidationError) as err:
        services.tasks.enqueue("t", run_at=far)
    assert [d["field"] for d in err.value.details] == ["run_at"]
    with pytest.raises(ValidationError) as err:
        services.tasks.enqueue_many([{"name": "ok"}, {"name": "t", "run_at": far}])
    assert [d["field"] for d in err.value.details] == ["tasks[1].run_at"]
    nothing_stored(services)


def test_large_payload_and_body(admin: Http, services: Services, api: Any) -> None:
    big = {"name": "t", "payload": {"blob": "x" * (1024 * 1024)}}
    assert_error(admin.post("/tasks", big), 413, "payload_too_large")
    limit = api.settings.max_body_bytes
    assert_error(admin.post("/tasks", raw=b" " * (limit + 1)), 413, "payload_too_large")
    nothing_stored(services)


def test_non_json_content_type_is_415(admin: Http, services: Services) -> None:
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        r = admin.post("/tasks", {"name": "t"}, headers={"Content-Type": ctype})
        assert_error(r, 415, "unsupported_media_type")
    ok = admin.post(
        "/tasks", {"name": "t"}, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert ok.status_code == 201
    # A GET without a body may carry any content type.
    assert admin.get("/tasks", headers={"Content-Type": "text/plain"}).status_code == 200


def test_unknown_method_on_known_route_is_405_in_our_shape(admin: Http) -> None:
    r = admin.call("DELETE", "/tasks")
    assert_error(r, 405, "method_not_allowed")
    assert set(r.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    assert_error(admin.call("PUT", "/health"), 405, "method_not_allowed")


def test_queue_patch_validation(admin: Http) -> None:
    for body in (
        {"paused": "yes"},
        {"concurrency": 0},
        {"rate_limit": {"per_second": 0, "burst": 1}},
        {"rate_limit": {"per_second": 1}},
        {"rate_limit": 5},
        {"other": 1},
        {"durability": None},
        {"durability": "QUEUE"},
        {"durability": 1},
        {"durability": "queue", "paused": "no"},
    ):
        r = admin.patch("/queues/default", body)
        assert_error(r, 400, "validation_error")
        named = {d["field"].split(".")[0] for d in r.json_body["error"]["details"]}
        assert named & set(body), (body, named)
    # A refused change applies nothing, the valid part of it included.
    admin.post("/tasks", {"name": "t"})
    q = admin.get("/queues/default").json_body
    assert (q["durability"], q["paused"]) == ("record", False)
    assert_error(admin.patch("/queues/bad%20name", {"paused": True}), 400, "validation_error")
    assert_error(admin.patch("/queues/default", raw=b"[]"), 400, "invalid_json")


def test_depth_limit_is_below_every_later_walk() -> None:
    ok = json.loads("[" * (jsonbody.MAX_DEPTH - 1) + "]" * (jsonbody.MAX_DEPTH - 1))
    assert jsonbody.problem(ok) is None
    deep = json.loads("[" * (jsonbody.MAX_DEPTH + 1) + "]" * (jsonbody.MAX_DEPTH + 1))
    assert jsonbody.problem(deep) is not None
