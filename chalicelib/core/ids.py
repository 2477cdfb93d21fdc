"""Task ids: UUIDv7 (RFC 9562), time-ordered and monotonic within a process.

A task's id sorts after every id this process made before it, even within one
millisecond, so "newest first" listings ordered by (created_at, id) keep creation order,
and the record's primary-key index grows at its right edge instead of at random pages.
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_last_ms = 0
_last_seq = 0
_SEQ_BITS = 74  # rand_a (12 bits) and rand_b (62 bits)


def uuid7(now_ms: int) -> str:
    global _last_ms, _last_seq
    with _lock:
        if now_ms > _last_ms:
            # A random start with the top bit clear leaves room to count up within the ms.
            _last_ms, _last_seq = now_ms, int.from_bytes(os.urandom(10)) >> (80 - _SEQ_BITS + 1)
        else:  # the same millisecond, or the clock stepped back: count on from the last id
            _last_seq += 1
        ms, seq = _last_ms, _last_seq
    rand_a, rand_b = seq >> 62 & 0xFFF, seq & (1 << 62) - 1
    # Formatted directly: going through uuid.UUID costs three times as much, and a bulk
    # enqueue makes one id per task.
    h = f"{ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
