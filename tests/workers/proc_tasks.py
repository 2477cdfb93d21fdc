"""Handlers for the ``--pool process`` tests (imported by the children via ``--tasks``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from chalicelib.core.errors import Cancelled, DTQError, Retry
from workers.registry import task


def count_primes(below: int) -> int:
    """Deliberately CPU-bound (pure Python, holds the GIL)."""
    return sum(1 for n in range(2, below) if all(n % d for d in range(2, int(n**0.5) + 1)))


@task("proc.primes")
def primes(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {
        "below": payload["below"],
        "primes": count_primes(payload["below"]),
        "pid": os.getpid(),
        "attempt": ctx.attempt,
        "task_id": ctx.task_id,
    }


@task("proc.fail")
def fail(payload: dict[str, Any]) -> None:
    raise ValueError(f"bad input {payload.get('n')}")


@task("proc.retry")
def retry(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    if ctx.attempt == 1:
        raise Retry(delay_seconds=0.5, reason="not yet")
    return {"attempt": ctx.attempt}


@task("proc.spin")
def spin(payload: dict[str, Any], ctx: Any) -> None:
    """Ignores its cancel flag: only killing the process ends it."""
    Path(payload["pidfile"]).write_text(str(os.getpid()))
    while True:
        count_primes(1000)


@task("proc.sleep")
def sleep(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    if "dir" in payload:  # a marker: the handler itself started (not only the claim)
        Path(payload["dir"], f"{ctx.task_id}.started").touch()
    if ctx.wait(float(payload["seconds"])):
        raise Cancelled("canceled while sleeping")
    return {"pid": os.getpid()}


@task("proc.parent")
def parent(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """The context calls a child forwards to the worker, and the one it refuses."""
    key = ctx.enqueue("proc.primes", {"below": 100})
    expires_ms = ctx.extend_lease(5)
    try:
        ctx.lock("x")
    except DTQError as exc:
        refused = str(exc)
    return {"key": key, "extended": expires_ms > 0, "lock": refused}


@task("proc.gc_frozen")
def gc_frozen(payload: dict[str, Any]) -> int:
    """Objects the worker took out of the collector's reach at start-up (workers.heap)."""
    import gc

    return gc.get_freeze_count()


@task("proc.progress")
def progress(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Reports progress ``steps`` times as fast as it can, from a child process; a bad
    argument is a ValueError here, in the handler."""
    steps = int(payload["steps"])
    for i in range(1, steps + 1):
        ctx.progress(i / steps, f"step {i} of {steps}")
    try:
        ctx.progress(2.0)
    except ValueError as exc:
        refused = str(exc)
    return {"refused": refused}
