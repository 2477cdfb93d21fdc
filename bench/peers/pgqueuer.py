"""pgqueuer: PostgreSQL (its own database), its worker as ``pgq run`` runs it, with the
default batch size (10) and no concurrency cap; batches are one ``enqueue`` of lists.

The worker is started through ``pgqueuer.run`` (``python -m bench.peers.pgqueuer``): in
1.6.0 ``pgq run`` fails on its own ``--log-level`` default."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pgqueuer
import psycopg
from pgqueuer import PgQueuer
from pgqueuer.db import PsycopgDriver, SyncPsycopgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries, SyncQueries

from bench.peers.base import PgPeer, database_url
from bench.stamp import stamp


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    """The worker's factory (as for ``pgq run bench.peers.pgqueuer:create``)."""
    conn = await psycopg.AsyncConnection.connect(database_url("pgqueuer"), autocommit=True)
    pgq = PgQueuer(PsycopgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    @pgq.entrypoint("stamp")
    async def stamp_task(job: Job) -> None:
        stamp(int(job.payload or b"0"))

    try:
        yield pgq
    finally:
        await conn.close()


class PgQueuerPeer(PgPeer):
    name = "pgqueuer"
    tables = ("pgqueuer", "pgqueuer_log", "pgqueuer_statistics")

    def __init__(self) -> None:
        super().__init__()
        self.queries = SyncQueries(SyncPsycopgDriver(self.conn))
        if not self.installed():
            asyncio.run(_install(self.dsn))

    def enqueue_noops(self, n: int) -> None:
        enqueue = self.queries.enqueue
        for _ in range(n):
            enqueue("noop", None)

    def enqueue_noops_bulk(self, n: int) -> None:
        self.queries.enqueue(["noop"] * n, [None] * n, [0] * n)

    def enqueue_stamp(self, t0_ns: int, *, last: bool = False) -> None:
        self.queries.enqueue("stamp", str(t0_ns).encode())

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[sys.executable, "-m", "bench.peers.pgqueuer"]] * processes


async def _install(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await Queries(PsycopgDriver(conn)).install()


def make() -> PgQueuerPeer:
    return PgQueuerPeer()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(pgqueuer.run(create))
