"""The built-in diagnostic tasks (docs/operations.md): always registered on every worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.core.errors import Cancelled

if TYPE_CHECKING:
    from workers.context import TaskContext


def noop(payload: dict[str, Any], ctx: TaskContext) -> None:
    return None


def echo(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return payload


def sleep(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Sleeps ``payload.seconds``; a cancel (or the attempt's timeout) ends it early."""
    if ctx.wait(float(payload.get("seconds", 1.0))):
        raise Cancelled("canceled while sleeping")


def fail(payload: dict[str, Any], ctx: TaskContext) -> str:
    """Raises until the attempt number exceeds ``payload.times`` (default: always)."""
    times = payload.get("times")
    if times is None or ctx.attempt <= int(times):
        raise RuntimeError(f"dtq.fail: attempt {ctx.attempt} fails on purpose")
    return "ok"


#: Task name → handler; ``workers.registry.load`` adds them to every registry.
HANDLERS = {"dtq.noop": noop, "dtq.echo": echo, "dtq.sleep": sleep, "dtq.fail": fail}
