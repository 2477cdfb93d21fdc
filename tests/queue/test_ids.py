from __future__ import annotations

import uuid

from chalicelib.core.clock import now_ms
from chalicelib.core.ids import uuid7


def test_ids_are_version_7_and_keep_their_order_within_a_millisecond() -> None:
    ms = now_ms() + 2
    ids = [uuid7(ms) for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == ms  # the millisecond, readable from the id
    assert all(str(uuid.UUID(i)) == i for i in ids)  # the canonical text form


def test_a_clock_stepping_back_never_makes_an_earlier_id() -> None:
    ms = now_ms() + 4
    later = uuid7(ms)
    assert uuid7(ms - 1000) > later
    assert uuid7(ms + 1) > later
