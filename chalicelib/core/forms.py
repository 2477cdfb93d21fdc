"""The one validation kit: request bodies, query strings and path parts → typed values.

A :class:`Form` collects every problem before raising, so one answer names all the
fields a client got wrong; unknown fields are refused so a typo (``prority``) never
silently falls back to a default. Every entry point uses it, the task check
(``taskspec.parse_task``) included, so a bound is written once.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from chalicelib.core.errors import InvalidJson, NotFound, ValidationError
from chalicelib.core.jsonbody import problem

#: What a name (task, queue, worker, schedule) may be made of.
NAME_RE = re.compile(r"[A-Za-z0-9_.:-]+")
#: Upper bound of every duration (ten years), so that arithmetic on one never overflows
#: and every computed time stays representable (a datetime, a millisecond bigint).
MAX_SECONDS = 10 * 365 * 86400.0

_MISSING: Any = object()
_INT_RE = re.compile(r"-?[0-9]{1,9}")
_SPACED_OFFSET = re.compile(r" ([0-9]{2}:?[0-9]{2})$")


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


class Form:
    """One JSON object being validated; call :meth:`done` after reading every field."""

    def __init__(
        self, body: Any, allowed: Collection[str], prefix: str = "", *, deep: bool = True
    ) -> None:
        if not isinstance(body, dict):
            if prefix:
                raise ValidationError(
                    f"{prefix.rstrip('.')} must be a JSON object",
                    details=[{"field": prefix.rstrip("."), "message": "must be a JSON object"}],
                )
            raise InvalidJson("the body must be a JSON object")
        self.body: dict[str, Any] = body
        self.prefix = prefix
        self.errors: list[dict[str, str]] = []
        for key in sorted(body.keys() - set(allowed)):
            self.add(key, "is not a known field")
        bad = problem(body) if deep else None
        if bad is not None:
            self.add(bad[0], bad[1])

    def add(self, field: str, message: str) -> None:
        error = {"field": self.prefix + field, "message": message}
        if error not in self.errors:
            self.errors.append(error)

    def done(self) -> None:
        if self.errors:
            first = self.errors[0]
            raise ValidationError(f"{first['field']} {first['message']}", details=self.errors)

    def _get(self, key: str, required: bool) -> Any:
        value = self.body.get(key, _MISSING)
        if value is _MISSING and required:
            self.add(key, "is required")
        return value

    def text(
        self,
        key: str,
        *,
        required: bool = True,
        max_len: int = 200,
        name: bool = False,
        nullable: bool = False,
    ) -> str | None:
        """A string of 1..max_len characters; with ``name`` also of ``[A-Za-z0-9_.:-]``."""
        value = self._get(key, required)
        if value is _MISSING or (value is None and nullable):
            return None
        if not isinstance(value, str) or not 1 <= len(value) <= max_len:
            self.add(key, f"must be a string of 1-{max_len} characters")
            return None
        if name and not NAME_RE.fullmatch(value):
            self.add(key, f"must be 1-{max_len} characters of [A-Za-z0-9_.:-]")
            return None
        bad = problem(value)
        if bad is not None:
            self.add(key, bad[1])
            return None
        return value

    def integer(
        self, key: str, lo: int, hi: int, *, required: bool = False, nullable: bool = False
    ) -> int | None:
        value = self._get(key, required)
        if value is _MISSING or (value is None and nullable):
            return None
        # bool is an int in Python; `true` is not a count. 3.0 is (JSON Schema agrees).
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(key, "must be an integer")
            return None
        if not lo <= value <= hi:
            self.add(key, f"must be between {lo} and {hi}")
            return None
        return value

    def number(
        self,
        key: str,
        lo: float,
        hi: float,
        *,
        required: bool = False,
        lo_open: bool = True,
        nullable: bool = False,
    ) -> float | None:
        """A finite number in ``(lo, hi]``, or ``[lo, hi]`` with ``lo_open=False``."""
        value = self._get(key, required)
        if value is _MISSING or (value is None and nullable):
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.add(key, "must be a number")
            return None
        if lo_open and not lo < value <= hi:
            self.add(key, f"must be greater than {lo:g} and at most {hi:g}")
            return None
        if not lo_open and not lo <= value <= hi:
            self.add(key, f"must be between {lo:g} and {hi:g}")
            return None
        return float(value)

    def url(self, key: str, *, max_len: int = 2000) -> str | None:
        """An optional http(s) URL (``null`` is no URL)."""
        value = self.text(key, required=False, max_len=max_len, nullable=True)
        if value is not None and not is_http_url(value):
            self.add(key, "must be an http(s) URL")
            return None
        return value

    def moment(self, key: str) -> datetime | None:
        """An optional ISO 8601 time with its UTC offset (``null`` is none)."""
        value = self._get(key, False)
        if value is _MISSING or value is None:
            return None
        try:
            return parse_datetime(value)
        except ValueError as exc:
            self.add(key, str(exc))
            return None

    def nested(self, key: str, allowed: Collection[str]) -> Form | None:
        """The optional object at ``key`` as a form whose errors are this form's
        (``null`` is absent); its fields are named ``key.field``."""
        value = self._get(key, False)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, dict):
            self.add(key, "must be an object")
            return None
        sub = Form(value, allowed, f"{self.prefix}{key}.", deep=False)
        self.errors.extend(e for e in sub.errors if e not in self.errors)
        sub.errors = self.errors
        return sub

    def boolean(self, key: str) -> bool | None:
        value = self._get(key, False)
        if value is _MISSING:
            return None
        if not isinstance(value, bool):
            self.add(key, "must be a boolean")
            return None
        return value

    def choice(self, key: str, options: Collection[str], *, required: bool = True) -> str | None:
        value = self._get(key, required)
        if value is _MISSING:
            return None
        if value not in options:
            self.add(key, f"must be one of {', '.join(sorted(options))}")
            return None
        return str(value)

    def names(self, key: str, *, max_items: int = 100, required: bool = True) -> list[str]:
        """A non-empty list of distinct queue names."""
        value = self._get(key, required)
        if value is _MISSING:
            return []
        if not isinstance(value, list) or not 1 <= len(value) <= max_items:
            self.add(key, f"must be a list of 1-{max_items} queue names")
            return []
        if not all(
            isinstance(v, str) and 1 <= len(v) <= 100 and NAME_RE.fullmatch(v) for v in value
        ):
            self.add(key, "must hold queue names of 1-100 characters of [A-Za-z0-9_.:-]")
            return []
        return list(dict.fromkeys(value))

    def items(self, key: str, *, max_items: int, required: bool = False) -> list[Any]:
        value = self._get(key, required)
        if value is _MISSING:
            return []
        if not isinstance(value, list) or len(value) > max_items:
            self.add(key, f"must be a list of at most {max_items} items")
            return []
        return value


def task_id(value: str) -> str:
    """A task id in canonical form; anything that is not a UUID names no task (404)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError):
        raise NotFound(f"task {value[:64]!r} not found") from None


def query(params: Mapping[str, list[str]] | None, allowed: Collection[str]) -> dict[str, str]:
    """Single-valued query parameters; unknown or repeated ones are refused."""
    found: dict[str, str] = {}
    errors: list[dict[str, str]] = []
    for key, values in (params or {}).items():
        if key not in allowed:
            errors.append({"field": key, "message": "is not a known parameter"})
        elif len(values) != 1:
            errors.append({"field": key, "message": "must be given once"})
        elif "\x00" in values[0]:
            errors.append({"field": key, "message": "must not contain NUL characters"})
        else:
            found[key] = values[0]
    if errors:
        raise ValidationError(f"{errors[0]['field']} {errors[0]['message']}", details=errors)
    return found


def query_int(params: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(key)
    if raw is None:
        return default
    if _INT_RE.fullmatch(raw) and lo <= int(raw) <= hi:
        return int(raw)
    message = f"must be an integer between {lo} and {hi}"
    raise ValidationError(f"{key} {message}", details=[{"field": key, "message": message}])


def query_name(params: Mapping[str, str], key: str, max_len: int = 200) -> str | None:
    raw = params.get(key)
    if raw is None:
        return None
    if not 1 <= len(raw) <= max_len or not NAME_RE.fullmatch(raw):
        message = f"must be 1-{max_len} characters of [A-Za-z0-9_.:-]"
        raise ValidationError(f"{key} {message}", details=[{"field": key, "message": message}])
    return raw


def query_time(params: Mapping[str, str], key: str) -> datetime | None:
    """An optional ISO 8601 time with its UTC offset (``2026-12-06T10:00:00Z``). A ``+``
    left unescaped in a query string arrives as a space: an offset after a space is
    read as positive."""
    raw = params.get(key)
    if raw is None:
        return None
    raw = _SPACED_OFFSET.sub(r"+\1", raw)
    try:
        return parse_datetime(raw)
    except ValueError as exc:
        message = str(exc)
        raise ValidationError(
            f"{key} {message}", details=[{"field": key, "message": message}]
        ) from None
