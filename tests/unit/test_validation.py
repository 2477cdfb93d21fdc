"""Task body validation: every documented rule, and the error details it gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chalicelib.core.errors import PayloadTooLarge, ValidationError
from chalicelib.core.forms import MAX_SECONDS
from chalicelib.core.models import Backoff
from chalicelib.core.taskspec import parse_task, request_hash


def fields_of(body: Any) -> list[str]:
    with pytest.raises(ValidationError) as err:
        parse_task(body, max_payload_bytes=1000)
    return [d["field"] for d in err.value.details]


def test_defaults() -> None:
    spec = parse_task({"name": "reports.daily"}, max_payload_bytes=1000)
    assert (spec.queue, spec.priority, spec.max_attempts, spec.timeout_seconds) == (
        "default",
        5,
        5,
        300,
    )
    assert spec.payload == {} and spec.backoff == Backoff() and spec.run_at is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": 5}, "name"),
        ({"name": "t", "queue": "q/1"}, "queue"),
        ({"name": "t", "queue": "q" * 101}, "queue"),
        ({"name": "t", "priority": 10}, "priority"),
        ({"name": "t", "priority": -1}, "priority"),
        ({"name": "t", "priority": True}, "priority"),
        ({"name": "t", "priority": 5.5}, "priority"),
        ({"name": "t", "priority": None}, "priority"),
        ({"name": "t", "delay_seconds": 10 * 365 * 86400 + 1}, "delay_seconds"),
        ({"name": "t", "backoff": {"max_seconds": 1e12}}, "backoff.max_seconds"),
        ({"name": "t", "payload": {"s": "a\x00b"}}, "payload.s"),
        ({"name": "t", "payload": {"s": "\ud800"}}, "payload.s"),
        ({"name": "t", "lock_key": "a\x00"}, "lock_key"),
        ({"name": "t", "max_attempts": 0}, "max_attempts"),
        ({"name": "t", "max_attempts": 101}, "max_attempts"),
        ({"name": "t", "timeout_seconds": 86401}, "timeout_seconds"),
        ({"name": "t", "payload": []}, "payload"),
        ({"name": "t", "payload": "x"}, "payload"),
        ({"name": "t", "delay_seconds": -1}, "delay_seconds"),
        ({"name": "t", "delay_seconds": "soon"}, "delay_seconds"),
        ({"name": "t", "run_at": "yesterday"}, "run_at"),
        ({"name": "t", "run_at": "2026-11-28T18:00:00"}, "run_at"),
        ({"name": "t", "run_at": "2026-11-28T18:00:00Z", "delay_seconds": 1}, "run_at"),
        ({"name": "t", "run_at": "9999-12-31T23:59:59Z"}, "run_at"),
        ({"name": "t", "run_at": "0001-01-01T00:00:00+14:00"}, "run_at"),
        ({"name": "t", "backoff": {"factor": 0.5}}, "backoff.factor"),
        ({"name": "t", "backoff": {"jitter": "yes"}}, "backoff.jitter"),
        ({"name": "t", "backoff": {"nope": 1}}, "backoff.nope"),
        ({"name": "t", "backoff": 3}, "backoff"),
        ({"name": "t", "idempotency_key": "k" * 201}, "idempotency_key"),
        ({"name": "t", "lock_key": ""}, "lock_key"),
        ({"name": "t", "webhook_url": "ftp://x"}, "webhook_url"),
        ({"name": "t", "prority": 5}, "prority"),
    ],
)
def test_invalid_fields_are_named(body: dict[str, Any], field: str) -> None:
    assert field in fields_of(body)


def test_every_error_is_reported_at_once_with_a_prefix() -> None:
    with pytest.raises(ValidationError) as err:
        parse_task({"priority": 11, "extra": 1}, max_payload_bytes=100, prefix="tasks[3].")
    assert {d["field"] for d in err.value.details} == {
        "tasks[3].extra",
        "tasks[3].name",
        "tasks[3].priority",
    }
    assert err.value.message.startswith("tasks[3].")


def test_not_an_object() -> None:
    assert fields_of([1, 2]) == [""]
    with pytest.raises(ValidationError) as err:
        parse_task("x", max_payload_bytes=100, prefix="tasks[2].")
    assert err.value.details == [{"field": "tasks[2]", "message": "must be a JSON object"}]


def test_integral_floats_are_integers_and_hash_as_such() -> None:
    """JSON Schema counts 5.0 as an integer; a client that sends it (JavaScript does)
    gets priority 5, and its retried request is the same request."""
    spec = parse_task(
        {"name": "t", "priority": 7.0, "max_attempts": 2.0, "idempotency_key": "k"},
        max_payload_bytes=100,
    )
    assert (spec.priority, spec.max_attempts) == (7, 2)
    assert type(spec.priority) is int
    assert spec.request_hash == request_hash({"name": "t", "priority": 7, "max_attempts": 2})


def test_payload_limit_counts_utf8_bytes() -> None:
    parse_task({"name": "t", "payload": {"s": "é" * 40}}, max_payload_bytes=100)
    with pytest.raises(PayloadTooLarge):
        parse_task({"name": "t", "payload": {"s": "é" * 60}}, max_payload_bytes=100)


def test_strings_are_kept_verbatim() -> None:
    nasty = "'; DROP TABLE dtq_tasks; -- <script>alert(1)</script> \u0007"
    spec = parse_task({"name": "t", "payload": {"s": nasty}}, max_payload_bytes=1000)
    assert spec.payload["s"] == nasty


def test_request_hash_ignores_key_order_and_the_key_itself() -> None:
    a = request_hash({"name": "t", "payload": {"a": 1, "b": 2}, "idempotency_key": "x"})
    b = request_hash({"payload": {"b": 2, "a": 1}, "name": "t"})
    assert a == b != request_hash({"name": "t", "payload": {"a": 2}})


def test_run_at_with_offset_is_parsed() -> None:
    spec = parse_task({"name": "t", "run_at": "2026-11-28T19:00:00+01:00"}, max_payload_bytes=10)
    assert spec.run_at is not None and spec.run_at.utcoffset() is not None
    assert spec.run_at.timestamp() == 1795888800.0


def test_run_at_is_bounded_like_delay_seconds_around_now() -> None:
    """Ten years either way of ``now``, offsets included: a time further out is refused
    with the field named (one near year 9999 had stopped the record)."""
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    limit = timedelta(seconds=MAX_SECONDS)

    def run_at(dt: datetime) -> datetime | None:
        return parse_task(
            {"name": "t", "run_at": dt.isoformat()}, max_payload_bytes=10, now=now
        ).run_at

    assert run_at(now + limit) == now + limit
    assert run_at(now - limit) == now - limit
    plus_two = timezone(timedelta(hours=2))
    assert run_at((now + limit).astimezone(plus_two)) == now + limit  # same instant
    for too_far in (
        now + limit + timedelta(milliseconds=1),
        now - limit - timedelta(seconds=1),
        (now + limit + timedelta(minutes=1)).astimezone(plus_two),
    ):
        with pytest.raises(ValidationError) as err:
            run_at(too_far)
        assert err.value.details == [
            {"field": "run_at", "message": "must be within ten years (315360000 seconds) of now"}
        ]
