"""Reads of the queue state in Redis: live task hashes, set sizes, counters, the idle
worker's blocking wait, and the server's clock. Nothing here changes state: that is
:mod:`chalicelib.queue.scripts`, through the Lua scripts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster

from chalicelib.queue import taskhash
from chalicelib.queue.keys import Keys
from chalicelib.queue.taskhash import LiveTask

#: Score span of one priority band in a ready set (_lib.lua PRIO_SPAN).
PRIO_SPAN = 2**48
#: Under Redis Cluster, how long a multi-queue wait blocks on one queue before the next.
CLUSTER_TURN_S = 0.02


class ServerClock:
    """Redis server time, estimated locally: one ``TIME`` call per ``refresh_s`` keeps
    ``run_at`` on the same clock as the scripts' lease deadlines without a round trip
    per task."""

    def __init__(self, client: redis.Redis, refresh_s: float = 30.0) -> None:
        self._client = client
        self._refresh_s = refresh_s
        self._offset_ms = 0.0
        self._checked = -1e18
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        mono = time.monotonic()
        if mono - self._checked > self._refresh_s:
            with self._lock:
                try:
                    before = time.time()
                    sec, usec = self._client.time()
                    after = time.time()
                except redis.RedisError:
                    # Redis is down: keep the last estimate. The task is still recorded
                    # in Postgres and dispatched once Redis returns.
                    pass
                else:
                    local_mid = (before + after) / 2 * 1000
                    self._offset_ms = sec * 1000 + usec / 1000 - local_mid
                    self._checked = mono
        return int(time.time() * 1000 + self._offset_ms)


#: Stream entries a read of an unrecorded task's ``created`` event looks through, in
#: pages, from the millisecond its enqueue ran: the entry is among the first few (those
#: of the same millisecond), unless the clock stepped back.
CREATED_PAGE = 100
CREATED_PAGES = 10


class QueueReads:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        # redis-py annotates replies as sync/async unions; typed wrappers below say what
        # each call really returns.
        self.redis: Any = client
        self.keys = keys
        self.clock = ServerClock(client)

    def ping(self) -> None:
        """Redis answers: under Cluster, every primary (a queue's keys may live on any
        of them, so one node answering says little)."""
        if isinstance(self.redis, RedisCluster):
            self.redis.ping(target_nodes=RedisCluster.PRIMARIES)
        else:
            self.redis.ping()

    def known_queues(self) -> list[str]:
        return sorted(m.decode() for m in self.redis.smembers(self.keys.queues))

    def dead(self, queue: str, limit: int) -> list[str]:
        """Ids in the queue's dead-letter set, oldest death first."""
        return [m.decode() for m in self.redis.zrange(self.keys.queue(queue).dead, 0, limit - 1)]

    def oldest_queued_ms(self, names: Sequence[str]) -> dict[str, int]:
        """When the longest-waiting queued task of each queue became due.

        The ready set is ordered by priority, then FIFO, so the oldest task is the head of
        one of the ten priority bands: ten bounded lookups, never a scan.
        """
        r = self.redis
        pipe = r.pipeline(transaction=False)
        for name in names:
            ready = self.keys.queue(name).ready
            for band in range(10):
                pipe.zrangebyscore(ready, band * PRIO_SPAN, (band + 1) * PRIO_SPAN - 1, 0, 1)
        heads = pipe.execute()
        pipe = r.pipeline(transaction=False)
        asked: list[str] = []
        for i, name in enumerate(names):
            for head in heads[i * 10 : i * 10 + 10]:
                if head:
                    pipe.hget(self.keys.queue(name).task(head[0].decode()), taskhash.RUN_AT)
                    asked.append(name)
        oldest: dict[str, int] = {}
        for name, run in zip(asked, pipe.execute() if asked else [], strict=True):
            if run is not None:
                oldest[name] = min(oldest.get(name, int(run)), int(run))
        return oldest

    def unrecorded_events(self, queue: str, task_id: str, limit: int) -> list[dict[str, Any]]:
        """The task's transitions still in its queue's event stream (not yet recorded),
        oldest first, from the newest ``limit`` entries. Entries are matched on the id's
        text before any is decoded, so a long stream of other tasks costs little."""
        needle = task_id.encode()
        entries = self.redis.xrevrange(self.keys.queue(queue).events, count=limit)
        found: list[dict[str, Any]] = []
        for _, fields in reversed(entries):
            data = fields.get(b"d", b"")
            if needle in data:
                events = json.loads(data)
                found += [e for e in events if isinstance(e, dict) and e.get("id") == task_id]
        return found

    def queue_holding(self, task_id: str) -> str | None:
        """The known queue whose Redis state holds the task (one pipelined look per
        queue), for a task the record does not know yet (durability "queue")."""
        queues = self.known_queues()
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.exists(self.keys.queue(queue).task(task_id))
        for queue, found in zip(queues, pipe.execute(), strict=True):
            if found:
                return queue
        return None

    def created_event(self, queue: str, task_id: str) -> dict[str, Any] | None:
        """The task's ``created`` event while it waits in the stream for the recorder
        (durability "queue"): it carries the task's row. None once recorded. The hash
        holds the millisecond its enqueue script ran (``ce``); the event is in the first
        stream entries from then on (matched on the id's text before any is decoded)."""
        qk = self.keys.queue(queue)
        since = self.redis.hget(qk.task(task_id), taskhash.CREATED_ENTRY)
        if since is None:
            return None
        needle, start = task_id.encode(), since.decode()
        for _ in range(CREATED_PAGES):
            entries = self.redis.xrange(qk.events, start, "+", count=CREATED_PAGE)
            for _, fields in entries:
                data = fields.get(b"d", b"")
                if needle in data:
                    for e in json.loads(data):
                        if (
                            isinstance(e, dict)
                            and e.get("id") == task_id
                            and e.get("ev") == "created"
                        ):
                            return e
            if len(entries) < CREATED_PAGE:
                return None
            start = "(" + entries[-1][0].decode()
        return None

    def live(self, queue: str, task_id: str) -> LiveTask | None:
        """The task as Redis holds it, or None when Redis no longer holds it."""
        return taskhash.decode(self.redis.hgetall(self.keys.queue(queue).task(task_id)))

    def live_many(self, items: Sequence[tuple[str, str]]) -> list[LiveTask | None]:
        pipe = self.redis.pipeline(transaction=False)
        for queue, task_id in items:
            pipe.hgetall(self.keys.queue(queue).task(task_id))
        return [taskhash.decode(raw) for raw in pipe.execute()]

    def task_hash(self, queue: str, task_id: str) -> dict[str, str] | None:
        """The task's hash field by field, as the scripts wrote it (for diagnostics and
        tests of the scripts; code reads :meth:`live`)."""
        raw = self.redis.hgetall(self.keys.queue(queue).task(task_id))
        return {k.decode(): v.decode() for k, v in raw.items()} if raw else None

    def workers_of(self, queue: str, task_ids: Sequence[str]) -> list[str | None]:
        """The worker each task was last leased to (None: never leased, or gone)."""
        pipe = self.redis.pipeline(transaction=False)
        qk = self.keys.queue(queue)
        for task_id in task_ids:
            pipe.hget(qk.task(task_id), taskhash.WORKER)
        return [None if w is None else w.decode() for w in pipe.execute()]

    def depths(self, queues: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Per queue: sizes of every state set, meta settings and the oldest ready task."""
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            qk = self.keys.queue(queue)
            pipe.zcard(qk.scheduled)
            pipe.zcard(qk.ready)
            pipe.zcard(qk.running)
            pipe.zcard(qk.retrying)
            pipe.zcard(qk.dead)
            pipe.hgetall(qk.meta)
            pipe.xlen(qk.events)
        replies = pipe.execute()
        out: dict[str, dict[str, Any]] = {}
        for i, queue in enumerate(queues):
            sch, rdy, run, rty, dead, meta, backlog = replies[i * 7 : i * 7 + 7]
            out[queue] = {
                "scheduled": sch,
                "queued": rdy,
                "running": run,
                "retrying": rty,
                "dead": dead,
                "meta": {k.decode(): v.decode() for k, v in meta.items()},
                "unrecorded_events": backlog,
            }
        return out

    def stats(self, queues: Sequence[str]) -> dict[str, dict[str, float]]:
        """Cluster-wide counters kept by the scripts, per queue."""
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.hgetall(self.keys.queue(queue).stats)
        return {
            queue: {k.decode(): float(v) for k, v in raw.items()}
            for queue, raw in zip(queues, pipe.execute(), strict=True)
        }

    def timeline(
        self, queues: Sequence[str], minutes: int
    ) -> list[tuple[int, str, dict[str, int]]]:
        """(minute, queue, fields) of every minute of the last ``minutes`` (the current
        one included, by the Redis server's clock) that counted something, oldest first
        (``timeline.py`` says what the fields are)."""
        last = self.clock.now_ms() // 60_000
        wanted = [(m, q) for m in range(last - minutes + 1, last + 1) for q in queues]
        pipe = self.redis.pipeline(transaction=False)
        for minute, queue in wanted:
            pipe.hgetall(self.keys.queue(queue).timeline(minute))
        return [
            (minute, queue, {k.decode(): int(v) for k, v in raw.items()})
            for (minute, queue), raw in zip(wanted, pipe.execute(), strict=True)
            if raw
        ]

    def events_tail(self, queue: str) -> str:
        """The id of the newest entry of the queue's event stream ("0-0": none), to wait
        for what comes after it."""
        newest = self.redis.xrevrange(self.keys.queue(queue).events, count=1)
        return newest[0][0].decode() if newest else "0-0"

    def await_task_event(
        self, queue: str, task_id: str, after: str, timeout_s: float
    ) -> tuple[str, bool]:
        """Block until the queue's event stream gets entries after ``after``, at most
        ``timeout_s``; returns the newest id read and whether any of the entries was a
        transition of ``task_id`` (matched on the id's text, nothing decoded)."""
        key = self.keys.queue(queue).events
        reply = self.redis.xread({key: after}, count=1000, block=max(1, int(timeout_s * 1000)))
        if not reply:
            return after, False
        entries = reply[0][1]
        needle = task_id.encode()
        seen = any(needle in (fields.get(b"d") or b"") for _, fields in entries)
        return entries[-1][0].decode(), seen

    def wait_for_work(self, queues: Sequence[str], timeout_s: float) -> bool:
        """Block until work may be there — an enqueue signals one of ``queues``, or a
        scheduled or retrying task falls due or a lease expires (those come without a
        signal) — or the timeout passes. True when work may be there."""
        due = self.next_due_ms(queues)
        due_first = False
        if due is not None:
            until_due = (due - self.clock.now_ms()) / 1000 + 0.002
            if until_due < timeout_s:
                timeout_s, due_first = until_due, True
        if timeout_s <= 0.001:  # BLPOP with timeout 0 would block forever
            return due_first
        signals = [self.keys.queue(q).signal for q in queues]
        if len(signals) > 1 and isinstance(self.redis, RedisCluster):
            return self._wait_in_turn(signals, timeout_s) or due_first
        return self.redis.blpop(signals, timeout=timeout_s) is not None or due_first

    def _wait_in_turn(self, signals: list[str], timeout_s: float) -> bool:
        # Redis Cluster refuses a BLPOP over keys of several slots (each queue has its
        # own): block on each queue's signal in turn, briefly, so that a wake-up for any
        # of them is seen within about len(signals) * CLUSTER_TURN_S.
        deadline = time.monotonic() + timeout_s
        while True:
            for signal in signals:
                left = deadline - time.monotonic()
                if left <= 0.001:
                    return False
                if self.redis.blpop([signal], timeout=min(left, CLUSTER_TURN_S)) is not None:
                    return True

    def next_due_ms(self, queues: Sequence[str]) -> int | None:
        """Earliest server time (ms) at which a scheduled or retrying task becomes due or a
        lease expires in ``queues``: such changes happen without a wake-up signal, so an
        idle worker bounds its blocking wait by this."""
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            qk = self.keys.queue(queue)
            for zset in (qk.scheduled, qk.retrying, qk.running):
                pipe.zrange(zset, 0, 0, withscores=True)
        heads = [int(h[0][1]) for h in pipe.execute() if h]
        return min(heads) if heads else None
