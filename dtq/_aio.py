"""The asyncio twin of a connection, for FastAPI, aiohttp and other asyncio producers.

Every call runs the same code as the blocking connection (one task check, one create
path, the same retries) on this connection's own thread pool, so the event loop never
blocks and no rule exists twice. Concurrent creates in the network share PostgreSQL
commits (the task service's group commit), so many awaiting producers cost few commits.
A waiting ``result()`` holds one thread of the pool while it waits: size ``threads`` for
the number of results awaited at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from dtq import _connection
from dtq._connection import Connection, TaskRef, body_of
from dtq._task import Task

T = TypeVar("T")


class AsyncConnection:
    def __init__(self, sync: Connection, *, threads: int = 32) -> None:
        self.sync = sync
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dtq-async")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args))

    async def enqueue(
        self, task: Task[Any, Any] | str, payload: dict[str, Any] | None = None, **options: Any
    ) -> AsyncTaskRef:
        """Enqueue one run of ``task`` (a task object, or a task name) with the options
        of ``Task.enqueue``."""
        created = await self._run(self.sync.create, body_of(task, payload, options))
        return AsyncTaskRef(str(created["id"]), self)

    async def enqueue_many(
        self, task: Task[Any, Any] | str, payloads: Iterable[dict[str, Any]], **options: Any
    ) -> list[AsyncTaskRef]:
        bodies = [body_of(task, p, options) for p in payloads]
        created = await self._run(self.sync.create_many, bodies)
        return [AsyncTaskRef(str(t["id"]), self) for t in created]

    def ref(self, task_id: str) -> AsyncTaskRef:
        """A reference to a task enqueued elsewhere."""
        return AsyncTaskRef(task_id, self)

    async def close(self) -> None:
        await self._run(self.sync.close)
        self._pool.shutdown(wait=False)

    async def __aenter__(self) -> AsyncConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass(frozen=True)
class AsyncTaskRef:
    """:class:`dtq.TaskRef`, awaitable."""

    id: str
    connection: AsyncConnection = field(repr=False, compare=False)

    def _sync(self) -> TaskRef:
        return TaskRef(self.id, self.connection.sync)

    async def get(self) -> dict[str, Any]:
        return await self.connection._run(self._sync().get)

    async def status(self) -> str:
        return await self.connection._run(self._sync().status)

    async def result(self, timeout: float | None = None) -> Any:
        return await self.connection._run(self._sync().result, timeout)

    async def cancel(self) -> bool:
        return await self.connection._run(self._sync().cancel)


def connect_async(*, threads: int = 32, **kwargs: Any) -> AsyncConnection:
    """:func:`dtq.connect`'s asyncio twin (same arguments, plus the pool size). It does
    not change the process's default (blocking) connection."""
    env: Mapping[str, str] | None = kwargs.pop("env", None)
    return AsyncConnection(_connection.make(env=env, **kwargs), threads=threads)
