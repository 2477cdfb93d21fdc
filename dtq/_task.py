"""Tasks as objects: ``@dtq.task`` registers a handler and gives it ``enqueue``; a
:class:`TaskRef` reads, waits for and cancels what was enqueued."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Generic, ParamSpec, TypeVar, overload

from dtq import _connection
from dtq._connection import Connection, TaskRef, options_of
from workers import registry

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A handler with a name and default options. Calling it runs the handler here;
    :meth:`enqueue` asks a worker to."""

    def __init__(self, name: str, fn: Callable[P, R], options: dict[str, Any]) -> None:
        self.name = name
        self.fn = fn
        self.options = options_of(options, f"@dtq.task({name!r})")
        registry.DEFAULT.add(name, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<dtq.Task {self.name}>"

    def body(self, payload: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        """The ``POST /tasks`` body of one enqueue: the task's options, then the call's."""
        merged = {**self.options, **options_of(options, f"{self.name}.enqueue")}
        return {"name": self.name, "payload": payload or {}, **merged}

    def enqueue(
        self,
        payload: dict[str, Any] | None = None,
        *,
        via: Connection | None = None,
        queue: str | None = None,
        priority: int | None = None,
        run_at: datetime | str | None = None,
        delay_seconds: float | None = None,
        max_attempts: int | None = None,
        timeout_seconds: int | None = None,
        backoff: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        lock_key: str | None = None,
        webhook_url: str | None = None,
    ) -> TaskRef:
        """Enqueue one run; any option overrides the task's own for this run."""
        conn = via or _connection.default()
        body = self.body(
            payload,
            queue=queue,
            priority=priority,
            run_at=run_at,
            delay_seconds=delay_seconds,
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds,
            backoff=backoff,
            idempotency_key=idempotency_key,
            lock_key=lock_key,
            webhook_url=webhook_url,
        )
        return TaskRef(str(conn.create(body)["id"]), conn)

    def enqueue_many(
        self,
        payloads: Iterable[dict[str, Any]],
        *,
        via: Connection | None = None,
        queue: str | None = None,
        priority: int | None = None,
        delay_seconds: float | None = None,
        max_attempts: int | None = None,
        timeout_seconds: int | None = None,
    ) -> list[TaskRef]:
        """Enqueue one run per payload, all or nothing, in one call."""
        conn = via or _connection.default()
        options = {
            "queue": queue,
            "priority": priority,
            "delay_seconds": delay_seconds,
            "max_attempts": max_attempts,
            "timeout_seconds": timeout_seconds,
        }
        bodies = [self.body(p, **options) for p in payloads]
        return [TaskRef(str(t["id"]), conn) for t in conn.create_many(bodies)]


@overload
def task(name: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    name: str | None = None,
    /,
    *,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    timeout_seconds: int | None = None,
    backoff: dict[str, Any] | None = None,
    lock_key: str | None = None,
    webhook_url: str | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    name: str | Callable[P, R] | None = None,
    /,
    **options: Any,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Make a function a task: ``@dtq.task`` (named ``module.function``) or
    ``@dtq.task("reports.daily", queue="reports", max_attempts=3)``. The options are the
    defaults of every enqueue; a worker started with ``--tasks <module>`` runs it."""
    if callable(name):
        fn = name
        return Task(f"{fn.__module__}.{fn.__qualname__}", fn, {})

    def deco(fn: Callable[P, R]) -> Task[P, R]:
        return Task(name or f"{fn.__module__}.{fn.__qualname__}", fn, options)

    return deco
