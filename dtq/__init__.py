"""DTQ: a fault-tolerant, offline-first, priority-aware distributed task queue.

``import dtq`` is the whole public surface; every other module is private::

    import dtq

    @dtq.task("reports.daily", queue="reports", max_attempts=3)
    def daily_report(payload: dict, ctx: dtq.Context) -> dict:
        ...

    ref = daily_report.enqueue({"day": "2026-11-28"}, priority=7)
    ref.result(timeout=30)

Names are loaded on first use: an installed DTQ keeps its internals inside this package,
so every DTQ process imports this module first and must not pay for the client here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalicelib.core.errors import (
        AlreadyFinished,
        Cancelled,
        ConfigError,
        Conflict,
        DTQError,
        Forbidden,
        NotFound,
        PayloadTooLarge,
        Retry,
        TaskCanceled,
        TaskFailed,
        Unauthorized,
        Unavailable,
        ValidationError,
    )
    from dtq._aio import AsyncConnection, AsyncTaskRef, connect_async
    from dtq._connection import Connection, TaskRef, connect
    from dtq._task import Task, task
    from workers.context import Context

__all__ = [
    "AlreadyFinished",
    "AsyncConnection",
    "AsyncTaskRef",
    "Cancelled",
    "ConfigError",
    "Conflict",
    "Connection",
    "Context",
    "DTQError",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "Retry",
    "Task",
    "TaskCanceled",
    "TaskFailed",
    "TaskRef",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
    "connect",
    "connect_async",
    "task",
]


def _load(name: str) -> Any:
    # Import statements, not module names in strings: an installed DTQ rewrites them to
    # its own place (setup.py), and strings would not follow.
    if name == "Context":
        from workers.context import Context

        return Context
    if name in ("AsyncConnection", "AsyncTaskRef", "connect_async"):
        from dtq import _aio

        return getattr(_aio, name)
    if name in ("Connection", "TaskRef", "connect"):
        from dtq import _connection

        return getattr(_connection, name)
    if name in ("Task", "task"):
        from dtq import _task

        return getattr(_task, name)
    from chalicelib.core import errors

    return getattr(errors, name)


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'dtq' has no attribute {name!r}")
    value = _load(name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
