"""The per-minute timeline of each queue (``GET /stats/timeline``), kept in Redis.

The scripts (``lua/_lib.lua``, ``flush_timeline``) count into one hash per queue and
minute of the Redis server's clock, ``{queue}:tl:<unix minute>``, kept a day and a
minute:

=========  ==============================================================
``enq``    tasks created (restores and replays excluded)
``ok``     tasks that succeeded
``fail``   failed attempts (raised, timed out, lease expired), retried or not
``w<i>``   the wait histogram: claims whose wait (due → claimed) fell in bucket ``i``
=========  ==============================================================

Bucket 0 holds waits under 1 ms; bucket ``i >= 1`` holds ``[2**((i-1)/4), 2**(i/4))``
ms, so each bucket is 19% wider than the one before it. A percentile is reported as the
geometric middle of the bucket that holds it: within 9% of the exact value (and 0 for
bucket 0, "under a millisecond").
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: How far back the timeline goes (minutes); the scripts keep each hash this long and
#: one more minute (TL_TTL_MS in lua/_lib.lua).
MAX_MINUTES = 1440
#: Buckets per doubling of the wait (TL_SCALE in lua/_lib.lua).
PER_DOUBLING = 4


def bucket_of(ms: float) -> int:
    """The histogram bucket of a wait of ``ms`` (what the scripts compute)."""
    if ms < 1:
        return 0
    return math.floor(math.log(ms) * (PER_DOUBLING / math.log(2))) + 1


def bucket_value(i: int) -> float:
    """The value a percentile falling in bucket ``i`` is reported as (ms)."""
    if i <= 0:
        return 0.0
    return round(2 ** ((i - 0.5) / PER_DOUBLING), 2)


def histogram(fields: Mapping[str, int]) -> dict[int, int]:
    """Bucket index → count, from a timeline hash's ``w<i>`` fields."""
    out: dict[int, int] = {}
    for name, n in fields.items():
        if name.startswith("w") and name[1:].isdigit() and n > 0:
            out[int(name[1:])] = n
    return out


def percentile(hist: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) of a histogram; None when it is empty. The rank is
    the nearest-rank one: the smallest value with at least ``q`` of the waits at or
    below it."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i in sorted(hist):
        seen += hist[i]
        if seen >= rank:
            return bucket_value(i)
    raise AssertionError("unreachable")  # pragma: no cover
