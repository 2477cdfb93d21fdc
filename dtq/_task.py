"""Tasks as objects: ``@dtq.task`` registers a handler and gives it ``enqueue``; a
:class:`TaskRef` reads, waits for and cancels what was enqueued."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, ParamSpec, TypeVar, overload

from chalicelib.core.errors import TaskCanceled, TaskFailed
from chalicelib.core.taskspec import TASK_FIELDS
from dtq import _connection
from dtq._connection import Connection
from workers import registry

P = ParamSpec("P")
R = TypeVar("R")

#: The options a task and each of its enqueues can set (``name`` and ``payload`` aside).
OPTIONS = tuple(sorted(TASK_FIELDS - {"name", "payload"}))
FINAL = ("succeeded", "dead", "canceled")


def _options(given: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(given.keys() - set(OPTIONS))
    if unknown:
        raise TypeError(f"{where}: unknown option {unknown[0]!r} (known: {', '.join(OPTIONS)})")
    out = {k: v for k, v in given.items() if v is not None}
    if isinstance(out.get("run_at"), datetime):
        out["run_at"] = out["run_at"].isoformat()
    return out


def body_of(
    task: Task[Any, Any] | str, payload: dict[str, Any] | None, options: dict[str, Any]
) -> dict[str, Any]:
    """The ``POST /tasks`` body of one run of a task object or of a task name."""
    if isinstance(task, Task):
        return task.body(payload, **options)
    return {"name": task, "payload": payload or {}, **_options(options, f"enqueue({task!r})")}


@dataclass(frozen=True)
class TaskRef:
    """A task that was enqueued: its ``id``, read through the connection that made it."""

    id: str
    connection: Connection = field(repr=False, compare=False)

    def get(self) -> dict[str, Any]:
        """The task as ``GET /tasks/{id}`` shows it, history included."""
        return self.connection.get(self.id)

    def status(self) -> str:
        return str(self.get()["status"])

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the task is final and return its result. Raises
        :class:`dtq.TaskFailed` (dead: attempts spent), :class:`dtq.TaskCanceled`, or
        ``TimeoutError`` when ``timeout`` seconds pass first (``None``: wait on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 3600.0 if deadline is None else max(0.0, deadline - time.monotonic())
            task = self.connection.wait(self.id, left)
            status = task["status"]
            if status == "succeeded":
                return task["result"]
            if status == "dead":
                raise TaskFailed(f"task {self.id} failed: {task.get('error')}", task)
            if status == "canceled":
                raise TaskCanceled(f"task {self.id} was canceled")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {self.id} is still {status} after {timeout} s")

    def cancel(self) -> bool:
        """Cancel the task: True when it is canceled now, False when it is running and
        stops at its worker's next lease extension."""
        _, done = self.connection.cancel(self.id)
        return done


class Task(Generic[P, R]):
    """A handler with a name and default options. Calling it runs the handler here;
    :meth:`enqueue` asks a worker to."""

    def __init__(self, name: str, fn: Callable[P, R], options: dict[str, Any]) -> None:
        self.name = name
        self.fn = fn
        self.options = _options(options, f"@dtq.task({name!r})")
        registry.DEFAULT.add(name, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<dtq.Task {self.name}>"

    def body(self, payload: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        """The ``POST /tasks`` body of one enqueue: the task's options, then the call's."""
        merged = {**self.options, **_options(options, f"{self.name}.enqueue")}
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
