"""Request bodies → JSON values, refusing what the record could not store.

PostgreSQL's ``jsonb`` and ``text`` refuse NUL characters, a lone surrogate cannot be
encoded as UTF-8, NaN and Infinity are not JSON, and a deeply nested value exhausts
the stack of whichever component walks it next. Each would otherwise fail deep inside a
write as a 500, so they are refused here, where the field can still be named.
"""

from __future__ import annotations

import json
import math
from typing import Any

from chalicelib.core.errors import InvalidJson

#: Deepest nesting accepted in a body. Real payloads stay far below it, and it keeps
#: every later walk (Postgres jsonb, Lua cjson, json.dumps) well inside its limits.
MAX_DEPTH = 64


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson("number out of range")
    return value


def loads(raw: bytes | str) -> Any:
    """Parse a request body; :class:`InvalidJson` when it is not UTF-8 JSON."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJson("the body is not valid UTF-8") from None
    else:
        text = raw
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidJson("the body is nested too deeply") from None
    except ValueError as exc:
        # Covers syntax errors, out-of-range numbers and over-long integers; the decoder's
        # position is useful to a client, its internals are not.
        where = ""
        if isinstance(exc, json.JSONDecodeError):
            where = f" (line {exc.lineno}, column {exc.colno})"
        raise InvalidJson(f"the body is not valid JSON{where}") from None


def problem(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first ``(field, message)`` that makes ``value`` unstorable, or None.

    Iterative, so that checking a deep value cannot itself overflow the stack.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            bad = _bad_text(item)
            if bad:
                return where, bad
            continue
        if depth >= MAX_DEPTH and isinstance(item, dict | list):
            return where, f"is nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, dict):
            for key, sub in item.items():
                here = f"{where}.{key}" if where else key
                bad = _bad_text(key)
                if bad:
                    return here, f"key {bad}"
                stack.append((sub, here, depth + 1))
        elif isinstance(item, list):
            stack.extend((sub, f"{where}[{i}]", depth + 1) for i, sub in enumerate(item))
    return None


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    return None
