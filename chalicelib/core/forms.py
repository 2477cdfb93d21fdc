"""Validation of the small request bodies and query strings (task bodies live in
``validation.py``).

A :class:`Form` collects every problem before raising, so one answer names all the
fields a client got wrong; unknown fields are refused so a typo never silently falls
back to a default.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Collection, Mapping
from typing import Any

from chalicelib.core.errors import InvalidJson, NotFound, ValidationError
from chalicelib.core.jsonbody import problem
from chalicelib.core.validation import NAME_RE

_MISSING: Any = object()
_INT_RE = re.compile(r"-?[0-9]{1,9}")


class Form:
    """One JSON object being validated; call :meth:`done` after reading every field."""

    def __init__(self, body: Any, allowed: Collection[str], prefix: str = "", *,
                 deep: bool = True) -> None:  # fmt: skip
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

    def text(self, key: str, *, required: bool = True, max_len: int = 200,
             name: bool = False, nullable: bool = False) -> str | None:  # fmt: skip
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

    def integer(self, key: str, lo: int, hi: int, *, required: bool = False,
                nullable: bool = False) -> int | None:  # fmt: skip
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

    def number(self, key: str, lo: float, hi: float, *, required: bool = False) -> float | None:
        value = self._get(key, required)
        if value is _MISSING:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.add(key, "must be a number")
            return None
        if not lo < value <= hi:
            self.add(key, f"must be greater than {lo:g} and at most {hi:g}")
            return None
        return float(value)

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


#: Task body fields that are integers (JSON Schema counts 3.0 as one, so do we).
_TASK_INTS = ("priority", "max_attempts", "timeout_seconds")
#: Bounds that keep every computed time representable (a datetime, a Lua number that
#: cjson can encode): a delay or backoff of more than ten years is a mistake anyway.
MAX_DELAY_S = 10 * 365 * 86400
_BACKOFF_MAX = {"base_seconds": MAX_DELAY_S, "max_seconds": MAX_DELAY_S, "factor": 1000}


def task_body(body: Any, prefix: str = "") -> Any:
    """A task body made ready for ``validation.parse_task``: storable strings only,
    integral floats as ints, and time spans bounded. Other checks are parse_task's."""
    if not isinstance(body, dict):
        return body
    form = Form(body, body.keys(), prefix)
    out = dict(body)
    for key in _TASK_INTS:
        value = out.get(key)
        if isinstance(value, float) and value.is_integer():
            out[key] = int(value)
    _at_most(form, out, "delay_seconds", MAX_DELAY_S)
    backoff = out.get("backoff")
    if isinstance(backoff, dict):
        for key, limit in _BACKOFF_MAX.items():
            _at_most(form, backoff, key, limit, "backoff.")
    form.done()
    return out


def _at_most(form: Form, data: dict[str, Any], key: str, limit: float, path: str = "") -> None:
    value = data.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > limit:
        form.add(path + key, f"must be at most {limit:g}")
