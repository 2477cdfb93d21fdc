"""The only place DTQ reads the wall clock; everything else takes ``now`` as an argument.

Queue deadlines do not use this clock at all: the Lua scripts read the Redis server's
``TIME`` so that every worker and API instance agrees on one clock.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def utcnow() -> datetime:
    return datetime.now(UTC)


def from_ms(ms: int | None) -> datetime | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 with an explicit UTC offset and milliseconds, as the API promises."""
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="milliseconds")


@functools.lru_cache(maxsize=256)
def iso_ms(ms: int) -> str:
    """``iso(from_ms(ms))`` for a known time, cached: the tasks of one batch share theirs."""
    return str(iso(from_ms(ms)))
