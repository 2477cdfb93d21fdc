"""dtq.connect_async: the asyncio twin over both connections, against real workers."""

from __future__ import annotations

import asyncio

import pytest

import dtq
from dtq._aio import AsyncConnection
from dtq._connection import Connection
from tests.client import tasks_app


def test_many_awaiting_producers_and_their_results(conn: Connection, worker: None) -> None:
    async def main() -> list[int]:
        aconn = AsyncConnection(conn, threads=8)
        refs = await asyncio.gather(
            *(aconn.enqueue(tasks_app.add, {"a": i, "b": 1}) for i in range(20))
        )
        assert len({r.id for r in refs}) == 20
        results = await asyncio.gather(*(r.result(timeout=30) for r in refs))
        assert await refs[0].status() == "succeeded"
        return list(results)

    assert asyncio.run(main()) == [i + 1 for i in range(20)]


def test_a_name_a_batch_and_the_errors_arrive_as_awaited(conn: Connection, worker: None) -> None:
    async def main() -> None:
        aconn = AsyncConnection(conn)
        refs = await aconn.enqueue_many("client.add", [{"a": 1, "b": 2}, {"a": 3, "b": 4}])
        assert [await r.result(timeout=30) for r in refs] == [3, 7]
        dead = await aconn.enqueue(tasks_app.boom, {"n": 1})
        with pytest.raises(dtq.TaskFailed):
            await dead.result(timeout=30)
        later = await aconn.enqueue("client.add", {"a": 1, "b": 1}, delay_seconds=3600)
        assert await later.cancel() is True
        with pytest.raises(TypeError, match="prority"):
            await aconn.enqueue("client.add", {}, prority=1)

    asyncio.run(main())


def test_the_event_loop_is_not_blocked_while_a_result_is_awaited(conn: Connection) -> None:
    async def main() -> int:
        aconn = AsyncConnection(conn)
        ref = await aconn.enqueue(tasks_app.add, {"a": 1, "b": 1}, delay_seconds=3600)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick = asyncio.create_task(ticker())
        with pytest.raises(TimeoutError):
            await ref.result(timeout=0.5)
        tick.cancel()
        await ref.cancel()
        return ticks

    assert asyncio.run(main()) > 5  # the loop ran while the wait blocked a pool thread
