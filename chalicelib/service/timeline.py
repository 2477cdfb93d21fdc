"""The per-minute timeline of the queues (``GET /stats/timeline``): counts and the
wait's p50 and p99, read from what the scripts keep in Redis (``queue/timeline.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chalicelib.core.clock import iso_ms
from chalicelib.queue import timeline
from chalicelib.queue.scripts import Queue

MAX_MINUTES = timeline.MAX_MINUTES


def buckets(queue: Queue, minutes: int, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One bucket per queue and minute of the last ``minutes`` that counted anything,
    oldest minute first, queues by name within a minute; every known queue when
    ``names`` is None."""
    names = queue.known_queues() if names is None else names
    out = []
    for minute, name, fields in queue.timeline(sorted(names), minutes):
        hist = timeline.histogram(fields)
        out.append(
            {
                "minute": iso_ms(minute * 60_000),
                "queue": name,
                "enqueued": fields.get("enq", 0),
                "succeeded": fields.get("ok", 0),
                "failed": fields.get("fail", 0),
                "started": sum(hist.values()),
                "p50_ms": timeline.percentile(hist, 0.5),
                "p99_ms": timeline.percentile(hist, 0.99),
            }
        )
    return out
