"""The fleet of workers: registration, heartbeats and what each one runs.

A worker registers on start and then again every heartbeat interval (``POST
/workers/register`` in HTTP mode, :meth:`Fleet.heartbeat` in Redis mode). Liveness is
read from Redis (a ZSET scored by last heartbeat); Postgres keeps who ever registered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from chalicelib.core.clock import from_ms, iso
from chalicelib.queue.scripts import Queue
from chalicelib.record.store import Store

#: Seconds between heartbeats; a worker unseen for 3 intervals is not alive.
HEARTBEAT_INTERVAL_S = 10
_ALIVE_INTERVALS = 3
#: Registration data outlives a dead worker this long, so `GET /workers` can show it.
_FORGET_AFTER_S = 24 * 3600


class Fleet:
    def __init__(self, queue: Queue, store: Store) -> None:
        self.queue = queue
        self.store = store

    def heartbeat(
        self,
        worker_id: str,
        *,
        queues: Sequence[str],
        hostname: str,
        concurrency: int,
        mode: str,
        record: bool = False,
    ) -> None:
        """Mark the worker alive; with ``record`` also upsert its row in Postgres
        (on registration, not on every beat: the beat must stay cheap)."""
        r, keys = self.queue.redis, self.queue.keys
        now = self.queue.clock.now_ms()
        info = {
            "queues": json.dumps(list(queues)),
            "hostname": hostname,
            "concurrency": concurrency,
            "mode": mode,
        }
        pipe = r.pipeline(transaction=False)
        pipe.zadd(keys.workers, {worker_id: now})
        pipe.hset(keys.worker(worker_id), mapping=info)
        pipe.expire(keys.worker(worker_id), _FORGET_AFTER_S)
        pipe.zremrangebyscore(keys.workers, "-inf", now - _FORGET_AFTER_S * 1000)
        pipe.execute()
        if record:
            self.store.upsert_worker(worker_id, hostname, queues, mode, concurrency)

    def forget(self, worker_id: str) -> None:
        """A worker that stopped cleanly leaves the fleet at once."""
        r, keys = self.queue.redis, self.queue.keys
        r.zrem(keys.workers, worker_id)
        r.delete(keys.worker(worker_id))

    def alive_count(self) -> int:
        now = self.queue.clock.now_ms()
        cutoff = now - HEARTBEAT_INTERVAL_S * _ALIVE_INTERVALS * 1000
        return int(self.queue.redis.zcount(self.queue.keys.workers, cutoff, "+inf"))

    def describe(self) -> list[dict[str, Any]]:
        """Every known worker with liveness and the tasks it holds right now."""
        r, keys = self.queue.redis, self.queue.keys
        now = self.queue.clock.now_ms()
        members = r.zrange(keys.workers, 0, -1, withscores=True)
        pipe = r.pipeline(transaction=False)
        for wid, _ in members:
            pipe.hgetall(keys.worker(wid.decode()))
        infos = pipe.execute()
        running = self._running_by_worker()
        out = []
        for (wid_b, seen), info in zip(members, infos, strict=True):
            wid = wid_b.decode()
            d = {k.decode(): v.decode() for k, v in info.items()}
            out.append(
                {
                    "worker_id": wid,
                    "last_seen_at": iso(from_ms(int(seen))),
                    "alive": now - seen <= HEARTBEAT_INTERVAL_S * _ALIVE_INTERVALS * 1000,
                    "queues": json.loads(d.get("queues", "[]")),
                    "running": running.get(wid, []),
                    "mode": d.get("mode", "redis"),
                    "hostname": d.get("hostname", ""),
                    "concurrency": int(d.get("concurrency", 0)),
                }
            )
        return out

    def _running_by_worker(self) -> dict[str, list[str]]:
        queue = self.queue
        found: dict[str, list[str]] = {}
        for name in queue.known_queues():
            qk = queue.keys.queue(name)
            ids = [m.decode() for m in queue.redis.zrange(qk.running, 0, -1)]
            if not ids:
                continue
            for task_id, wid in zip(ids, queue.workers_of(name, ids), strict=True):
                if wid:
                    found.setdefault(wid, []).append(task_id)
        return found
