"""Request bodies → typed, validated values.

Every check names the field that failed in ``ValidationError.details``; unknown fields
are refused so that a typo (``prority``) never silently runs with a default.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from chalicelib.core.clock import utcnow
from chalicelib.core.errors import PayloadTooLarge, ValidationError
from chalicelib.core.jsontext import compact
from chalicelib.core.models import DEFAULT_BACKOFF, Backoff

NAME_RE = re.compile(r"[A-Za-z0-9_.:-]+")
#: Upper bound of every duration, so that arithmetic on it can never overflow.
MAX_SECONDS = 10 * 365 * 86400.0
#: How far ``run_at`` may lie from now, either way: the bound of ``delay_seconds``. A time
#: beyond it is a mistake, and one near year 9999 was not storable: the scripts' events
#: carry it in milliseconds, which cjson writes with 14 significant digits (2.534e+14),
#: and PostgreSQL refused such an event as a bigint, which held up the whole record.
MAX_RUN_AT_DISTANCE = timedelta(seconds=MAX_SECONDS)
TASK_FIELDS = frozenset(
    {
        "name", "payload", "queue", "priority", "run_at", "delay_seconds", "max_attempts",
        "timeout_seconds", "backoff", "idempotency_key", "lock_key", "webhook_url",
    }
)  # fmt: skip
BACKOFF_FIELDS = frozenset({"base_seconds", "factor", "max_seconds", "jitter"})


class TaskSpec(NamedTuple):
    """A task body as the API and the Python client accept it, validated (a named tuple,
    like ``models.NewTask``: one is built per task of a batch)."""

    name: str
    payload: dict[str, Any]
    payload_json: str
    queue: str = "default"
    priority: int = 5
    run_at: datetime | None = None
    delay_seconds: float | None = None
    max_attempts: int = 5
    timeout_seconds: int = 300
    backoff: Backoff = DEFAULT_BACKOFF
    idempotency_key: str | None = None
    lock_key: str | None = None
    webhook_url: str | None = None
    request_hash: str | None = None  #: only with an idempotency key: it is what it guards


class _Errors:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.items: list[dict[str, Any]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": self.prefix + field, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            raise ValidationError(f"{first['field']} {first['message']}", details=self.items)


def _int(errors: _Errors, body: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = body.get(key, default)
    # bool is an int in Python; `true` is not a priority.
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add(key, "must be an integer")
        return default
    if not lo <= value <= hi:
        errors.add(key, f"must be between {lo} and {hi}")
    return value


def _number(errors: _Errors, data: dict[str, Any], key: str, default: float, lo: float,
            hi: float = MAX_SECONDS) -> float:  # fmt: skip
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors.add(key, "must be a number")
        return default
    if not lo <= value <= hi:
        errors.add(key, f"must be between {lo:g} and {hi:g}")
        return default
    return float(value)


def _name(errors: _Errors, body: dict[str, Any], key: str, default: str | None, limit: int) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        errors.add(key, "is required" if value is None else "must be a string")
        return ""
    if not 1 <= len(value) <= limit or not NAME_RE.fullmatch(value):
        errors.add(key, f"must be 1-{limit} characters of [A-Za-z0-9_.:-]")
    return value


def _optional_text(errors: _Errors, body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        errors.add(key, f"must be a string of 1-{limit} characters")
        return None
    if "\x00" in value:
        errors.add(key, "must not contain NUL characters")
    return value


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host that the notifier can actually call."""
    if any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:  # say "http://[" (an unclosed IPv6 literal)
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def parse_datetime(value: Any) -> datetime:
    """An ISO 8601 time with an explicit offset (naive times are ambiguous: refused)."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 time") from None
    if dt.tzinfo is None:
        raise ValueError("must include a UTC offset")
    return dt


def _backoff(errors: _Errors, value: Any) -> Backoff:
    if value is None:
        return DEFAULT_BACKOFF
    if not isinstance(value, dict):
        errors.add("backoff", "must be an object")
        return DEFAULT_BACKOFF
    sub = _Errors(errors.prefix + "backoff.")
    for key in value.keys() - BACKOFF_FIELDS:
        sub.add(key, "is not a known field")
    jitter = value.get("jitter", True)
    if not isinstance(jitter, bool):
        sub.add("jitter", "must be a boolean")
        jitter = True
    backoff = Backoff(
        base_seconds=_number(sub, value, "base_seconds", 1.0, 0.0),
        factor=_number(sub, value, "factor", 2.0, 1.0, 1000.0),
        max_seconds=_number(sub, value, "max_seconds", 3600.0, 0.0),
        jitter=jitter,
    )
    errors.items.extend(sub.items)
    return backoff


def request_hash(body: dict[str, Any]) -> str:
    """Fingerprint of a task body, to tell a repeated request from a different one that
    reuses an idempotency key."""
    canonical = {k: v for k, v in body.items() if k != "idempotency_key"}
    return hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _run_at(value: Any, now: datetime | None) -> datetime:
    run_at = parse_datetime(value)
    # Aware datetimes subtract across offsets without converting to UTC, which would
    # overflow for a time such as 0001-01-01T00:00:00+14:00.
    if abs(run_at - (now or utcnow())) > MAX_RUN_AT_DISTANCE:
        raise ValueError(f"must be within ten years ({MAX_SECONDS:.0f} seconds) of now")
    return run_at


def parse_task(body: Any, *, max_payload_bytes: int, prefix: str = "",
               now: datetime | None = None) -> TaskSpec:  # fmt: skip
    """Validate one task body (``POST /tasks``, a batch item, a sync ``created`` item);
    ``now`` (default: the wall clock) is what ``run_at`` is bounded around."""
    errors = _Errors(prefix)
    if not isinstance(body, dict):
        errors.add("", "must be a JSON object")
        errors.raise_if_any()
        raise AssertionError("unreachable")
    if not body.keys() <= TASK_FIELDS:
        for key in sorted(body.keys() - TASK_FIELDS):
            errors.add(key, "is not a known field")
    name = _name(errors, body, "name", None, 200)
    queue = _name(errors, body, "queue", "default", 100)
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        errors.add("payload", "must be a JSON object")
        payload = {}
    run_at: datetime | None = None
    delay: float | None = None
    if "run_at" in body and "delay_seconds" in body:
        errors.add("run_at", "give run_at or delay_seconds, not both")
    elif body.get("run_at") is not None:
        try:
            run_at = _run_at(body["run_at"], now)
        except ValueError as exc:
            errors.add("run_at", str(exc))
    elif body.get("delay_seconds") is not None:
        delay = _number(errors, body, "delay_seconds", 0.0, 0.0)
    webhook = _optional_text(errors, body, "webhook_url", 2000)
    if webhook is not None and not is_http_url(webhook):
        errors.add("webhook_url", "must be an http(s) URL")
    priority = _int(errors, body, "priority", 5, 0, 9)
    max_attempts = _int(errors, body, "max_attempts", 5, 1, 100)
    timeout_seconds = _int(errors, body, "timeout_seconds", 300, 1, 86400)
    backoff = _backoff(errors, body.get("backoff"))
    idempotency_key = _optional_text(errors, body, "idempotency_key", 200)
    lock_key = _optional_text(errors, body, "lock_key", 200)
    errors.raise_if_any()
    payload_json = compact(payload)
    # UTF-8 takes at most 4 bytes per character: most payloads need no encoding to tell.
    if len(payload_json) * 4 > max_payload_bytes and len(payload_json.encode()) > max_payload_bytes:
        raise PayloadTooLarge(
            f"{prefix}payload is larger than {max_payload_bytes} bytes",
            details=[{"field": prefix + "payload", "message": "too large"}],
        )
    return TaskSpec(
        name=name, payload=payload, payload_json=payload_json, queue=queue,
        priority=priority, run_at=run_at, delay_seconds=delay, max_attempts=max_attempts,
        timeout_seconds=timeout_seconds, backoff=backoff, idempotency_key=idempotency_key,
        lock_key=lock_key, webhook_url=webhook,
        request_hash=request_hash(body) if idempotency_key is not None else None,
    )  # fmt: skip
