"""The bench's observable task: records when it started, for every queue under test.

A stamp task carries ``t0`` (``time.time_ns()`` taken by the enqueuer just before its
enqueue call) and appends ``"<t0> <start>"`` to the file named by ``BENCH_STAMP_FILE``.
Both clocks are ``time.time_ns()`` on one machine, so the difference is the
enqueue-to-start latency even across processes. One unbuffered ``os.write`` per stamp
(≈ 2 µs) keeps the observer out of the measurement.
"""

from __future__ import annotations

import os
import time

ENV = "BENCH_STAMP_FILE"
_fd: int | None = None


def stamp(t0_ns: int) -> None:
    start = time.time_ns()
    global _fd
    if _fd is None:
        _fd = os.open(os.environ[ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, f"{int(t0_ns)} {start}\n".encode())


def read(path: str) -> list[tuple[int, int]]:
    """The ``(t0, start)`` pairs written so far (a torn last line is skipped)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in data.split(b"\n"):
        parts = line.split()
        if len(parts) == 2:
            out.append((int(parts[0]), int(parts[1])))
    return out


def count(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0
