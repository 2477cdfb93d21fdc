"""What every peer adapter shares: the Redis or PostgreSQL URL, the venv's scripts, reset."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import redis

from bench import procs

T = TypeVar("T")

#: The peer's Redis database (set by the harness for the driver and the workers alike,
#: so module-level app/broker objects can be built at import, as each peer expects).
URL_ENV = "BENCH_REDIS_URL"
#: The PostgreSQL database of a peer that queues in PostgreSQL (its own database).
DATABASE_ENV = "BENCH_DATABASE_URL"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def redis_url() -> str:
    return os.environ.get(URL_ENV, "redis://127.0.0.1:6379/1")


def database_url(peer: str) -> str:
    return os.environ.get(DATABASE_ENV, f"postgresql://postgres@127.0.0.1:5432/bench_{peer}")


class PeerUnavailable(RuntimeError):
    """The peer's runtime or package is missing here: the peer is skipped, not failed."""


def script(name: str) -> str:
    """A console script of the venv running this process."""
    return os.path.join(os.path.dirname(sys.executable), name)


class Peer:
    """Defaults for a peer adapter; subclasses fill in the rest of ``bench.drive.System``."""

    name = "peer"
    bulk_supported = False
    threads_supported = False

    def __init__(self) -> None:
        self.url = redis_url()
        self.redis = redis.Redis.from_url(self.url)

    def reset(self) -> None:
        self.redis.flushdb()

    def enqueue_noops_bulk(self, n: int) -> None:
        raise NotImplementedError(f"{self.name} has no bulk enqueue")

    def worker_env(self) -> dict[str, str]:
        return {URL_ENV: self.url, "PYTHONPATH": REPO}

    def cpu_groups(self, workers: Sequence[Any]) -> Mapping[str, Iterable[int]]:
        """Where a drain's CPU goes: the worker processes (and their children), and the
        server holding the queue (the private redis-server)."""
        roots = [p.pid for p in workers]
        return {
            "worker": roots + sorted(procs.descendants(roots)),
            "redis": [int(self.redis.info("server")["process_id"])],
        }

    def close(self) -> None:
        self.redis.flushdb()
        self.redis.close()


class AsyncPeer(Peer):
    """For asyncio peers: one event loop for the adapter's lifetime."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


class PgPeer:
    """Defaults for a peer queueing in PostgreSQL, in its own database (created when
    missing); subclasses set ``name`` and ``tables`` (emptied before each measurement)."""

    name = "peer"
    tables: tuple[str, ...] = ()
    bulk_supported = True
    threads_supported = False

    def __init__(self) -> None:
        import psycopg

        self.dsn = database_url(self.name)
        _create_database(self.dsn)
        self.conn = psycopg.connect(self.dsn, autocommit=True)

    def installed(self) -> bool:
        row = self.conn.execute("SELECT to_regclass(%s)", (self.tables[0],)).fetchone()
        return row is not None and row[0] is not None

    def pending(self) -> int:
        """Jobs in the queue table not completed yet (done jobs leave it)."""
        row = self.conn.execute(f"SELECT count(*) FROM {self.tables[0]}").fetchone()
        return int(row[0]) if row else 0

    def reset(self) -> None:
        self.conn.execute(f"TRUNCATE {', '.join(self.tables)} RESTART IDENTITY CASCADE")

    def enqueue_noops_bulk(self, n: int) -> None:
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        return {DATABASE_ENV: self.dsn, "PYTHONPATH": REPO}

    def cpu_groups(self, workers: Sequence[Any]) -> Mapping[str, Iterable[int]]:
        """The worker processes and every PostgreSQL process (the server is shared)."""
        roots = [p.pid for p in workers]
        return {
            "worker": roots + sorted(procs.descendants(roots)),
            "postgres": procs.pids_named("postgres"),
        }

    def close(self) -> None:
        self.reset()
        self.conn.close()


def _create_database(dsn: str) -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    name = str(params.get("dbname", ""))
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(f'CREATE DATABASE "{name}"')
