"""Fences and transition numbers that only grow, even when Redis loses writes.

A fence must never be handed out twice, and a task's transition number (its version,
the history's ``seq``) must never repeat one the record already has. Both are counters
kept in Redis, and Redis can forget its newest writes: a restart whose AOF misses its
last second (``appendfsync everysec``), a failover to a replica that had not caught up,
a rebuild by ``dtq recover`` after a total loss. The counters it hands out next would
then repeat numbers already given to a holder that may still be running.

So both carry an *epoch* in their high bits (``number = epoch * 2**32 + count``; the
scripts take ``max(count + 1, epoch * 2**32 + 1)``). The epoch lives in PostgreSQL,
which does not lose committed writes, and is raised whenever Redis may have lost some:

- a Redis server process not seen before (its ``run_id``: a restart or a failover),
  noticed on the first connection this process makes to it (:class:`ServerWatch`), before
  that connection carries a command — so nothing is claimed there with the old epoch
  (and again by a script call that finds the script cache empty);
- Redis without its copy of the epoch (its data was lost or flushed), or with an older
  one than the record (it lost the write that published the last raise);
- ``dtq recover``, always, and a reconciliation that finds a task Redis had and lost.

A raise is published into every queue's meta hash (``ep``) and the deployment's epoch
hash, which the scripts and the lock helper read. Raising more often than needed is
harmless (the numbers jump); raising too late is what this module exists to prevent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import redis

from chalicelib.core.errors import Unavailable
from chalicelib.queue.scripts import Queue
from chalicelib.record.epochs import EpochRecord
from chalicelib.record.store import Store

log = logging.getLogger("dtq.epoch")

#: Fences and versions are ``epoch * EPOCH_SPAN + count`` (the Lua scripts' EPOCH_SPAN).
EPOCH_SPAN = 2**32
#: After a check failed (PostgreSQL unreachable), new connections fail at once for this
#: long instead of each waiting for PostgreSQL again.
RECHECK_AFTER_S = 1.0


def split(number: int) -> tuple[int, int]:
    """(epoch, count) of a fence or a version."""
    return divmod(number, EPOCH_SPAN)


class ServerWatch:
    """A redis-py ``redis_connect_func``: on every new connection, asks the server its
    ``run_id``; the first time this process meets a server process, ``check`` runs (the
    epoch check) before the connection is used. A Redis restart or failover drops every
    connection, so whatever this process sends next goes through here first. If the
    check fails (PostgreSQL unreachable) the connection fails, and the next one checks
    again: nothing runs against an unchecked server."""

    def __init__(self, *, cluster: bool = False) -> None:
        #: Under Cluster, redis-py initialises the connection itself before calling us.
        self._cluster = cluster
        self.check: Callable[[], object] | None = None
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self._local = threading.local()
        #: After a failed check: (monotonic time before which connections fail at once,
        #: why). Without it every connection attempt, each under a lock some caller holds
        #: (the server clock's), waited for PostgreSQL's timeout in turn.
        self._failed: tuple[float, str] | None = None

    def __call__(self, connection: Any) -> None:
        if not self._cluster:
            connection.on_connect()
        if self.check is None or getattr(self._local, "checking", False):
            return  # not installed, or a connection the check itself opened
        connection.send_command("INFO", "server")
        run_id = _run_id(connection.read_response())
        if run_id in self._known:
            return
        with self._lock:
            if run_id in self._known:
                return
            failed = self._failed
            if failed is not None and time.monotonic() < failed[0]:
                raise redis.ConnectionError(_unchecked(run_id, failed[1]))
            self._local.checking = True
            try:
                self.check()
            except Unavailable as exc:
                # Unchecked, the server is as good as unreachable: callers that ride out
                # a Redis outage (a worker goes offline, the API answers 503 or leaves
                # dispatch for later) do the same here.
                self._failed = (time.monotonic() + RECHECK_AFTER_S, str(exc))
                raise redis.ConnectionError(_unchecked(run_id, str(exc))) from exc
            finally:
                self._local.checking = False
            self._failed = None
            self._known.add(run_id)


def _unchecked(run_id: str, why: str) -> str:
    return f"Redis server {run_id} not yet checked against the record: {why}"


def _run_id(info: Any) -> str:
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("run_id:"):
            return line.split(":", 1)[1].strip()
    return text  # no run_id line: the whole answer stands for the server


class Epochs:
    """Raises and publishes the epoch; installed as the queue's new-server hook."""

    def __init__(self, queue: Queue, store: Store) -> None:
        self.queue = queue
        self.record = EpochRecord(store)

    def install(self, watch: ServerWatch | None = None) -> None:
        """Run :meth:`on_new_server` on the first connection to each Redis server process
        (``watch``, the client's connect hook), whenever the queue finds Redis without its
        scripts, and whenever a queue is registered in a Redis that has no epoch."""
        self.queue.on_new_server = self.on_new_server
        if watch is not None:
            watch.check = self.on_new_server

    def on_new_server(self) -> int:
        """Check the Redis server against the record; raise the epoch if it may have lost
        writes; publish the epoch. Returns it."""
        runs = self.queue.server_run_ids()
        held, checked_run = self.queue.published_check()
        if held is not None and runs == [checked_run]:
            # Some process checked this very server process against the record and wrote
            # so into it: it has not restarted since, so it lost nothing since. No need to
            # reach PostgreSQL (a worker starting during a PostgreSQL outage still works).
            return held
        try:
            return self._check(runs, held)
        except psycopg.errors.UndefinedTable:
            # Not migrated yet (a container that starts before `dtq migrate`): there is no
            # record, so nothing to protect; the next new connection checks again.
            log.warning("epoch not checked: the record has no dtq_epoch table (run dtq migrate)")
            raise Unavailable("the record is not migrated") from None

    def _check(self, runs: list[str], held: int | None) -> int:
        def decide(epoch: int, seen_before: bool, new: list[str]) -> str | None:
            if not seen_before:
                # The first server a deployment ever checks is its baseline: nothing was
                # handed out before it that it could have lost.
                return None
            if new:
                return f"new Redis server process {', '.join(new)}"
            if held is None:
                return "Redis holds no epoch (its data was lost or flushed)"
            if held < epoch:
                return f"Redis holds epoch {held}, the record {epoch}"
            return None

        epoch, reason = self.record.note_servers(runs, decide)
        if reason is not None:
            log.warning("epoch raised to %d: %s", epoch, reason)
        self.queue.publish_epoch(epoch, runs[0] if len(runs) == 1 else None)
        return epoch

    def raise_epoch(self, reason: str) -> int:
        """Raise unconditionally (``dtq recover``, a lost task found) and publish."""
        epoch = self.record.raise_epoch(reason)
        log.warning("epoch raised to %d: %s", epoch, reason)
        self.queue.publish_epoch(epoch)
        return epoch
