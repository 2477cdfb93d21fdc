"""Moves transitions from the queues' Redis event streams into the Postgres record.

Every Lua state change appends its event to ``P:{queue}:events`` in the same atomic
step, so Redis and the record can never disagree about what happened, only about when
the record learns it. Recorders read the streams through one consumer group (several
processes share the load), hand each batch to Postgres as one JSON array in one
statement (history, snapshots, notifications: ``record_events``) and acknowledge only
after the commit. The recorder never decodes an event: it joins the entries' JSON text,
which keeps its cost per task near zero. If Postgres is down the entries stay pending and
are written when it returns; a replayed batch is a no-op (history and notifications are
keyed by (task, seq), rows guarded by version).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import psycopg
import redis

from chalicelib.errors import Unavailable
from chalicelib.queue import Queue
from chalicelib.store import Store

log = logging.getLogger("dtq.recorder")

GROUP = "recorder"
#: Stream entries read per queue per round (an entry holds one script call's
#: transitions, up to ~100); one statement per round.
BATCH = 200
#: After a round that found less than a quarter batch, wait this long for more. A round
#: costs a statement, a commit and four round trips whatever its size: PostgreSQL takes
#: ≈ 41 µs per task in rounds of 20 tasks and ≈ 24 µs in rounds of 200 (2026-11-29), and
#: at peak drain rate an eager recorder made rounds of 60-150 tasks.
GATHER_S = 0.02
#: Pending entries of a consumer idle this long are taken over (it probably died).
CLAIM_IDLE_MS = 30_000


def decode_entry(fields: dict[bytes, bytes]) -> list[dict[str, Any]]:
    """The transitions in one stream entry (every transition of one script call)."""
    data = json.loads(fields[b"d"])
    return data if isinstance(data, list) else [data]


def join_entries(entries: list[bytes]) -> str:
    """Stream entries (each a JSON array of events) → one JSON array, without decoding."""
    return "[" + ",".join(e.decode()[1:-1] for e in entries) + "]"


def upgrade_entries(entries: list[bytes]) -> str:
    """Like :func:`join_entries`, for entries written before 2026-11-29 by scripts that
    marked absent fields ``false`` (Postgres refuses ``false`` as a number)."""
    events = [e for raw in entries for e in decode_entry({b"d": raw})]
    return json.dumps([
        {k: v for k, v in e.items() if v is not False or k == "cr"} for e in events
    ])  # fmt: skip


class Recorder:
    def __init__(self, queue: Queue, store: Store, consumer: str) -> None:
        self.queue = queue
        self.store = store
        self.consumer = consumer
        self._grouped: set[str] = set()
        self._rounds = 0

    def _streams(self) -> list[str]:
        return [self.queue.keys.queue(q).events for q in self.queue.known_queues()]

    def _ensure_group(self, stream: str) -> None:
        try:
            self.queue.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._grouped.add(stream)

    def _read(
        self, streams: list[str], start: str
    ) -> list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]]:
        """One pipelined XREADGROUP per stream (Cluster-safe: one key per command)."""
        r = self.queue.redis
        for s in streams:
            if s not in self._grouped:
                self._ensure_group(s)
        pipe = r.pipeline(transaction=False)
        for s in streams:
            pipe.xreadgroup(GROUP, self.consumer, {s: start}, count=BATCH)
        out = []
        for s, reply in zip(streams, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, redis.ResponseError):
                if "NOGROUP" in str(reply):  # the stream was lost (FLUSHALL): start over
                    self._grouped.discard(s)
                    continue
                raise reply
            for _, entries in reply or []:
                if entries:
                    out.append((s, entries))
        return out

    def _take_over_abandoned(self, streams: list[str]) -> None:
        for s in streams:
            try:
                self.queue.redis.xautoclaim(
                    s, GROUP, self.consumer, CLAIM_IDLE_MS, start_id="0-0", count=BATCH, justid=True
                )
            except redis.ResponseError:
                self._grouped.discard(s)

    def drain_once(self) -> int:
        """Record one round: our own pending entries first (a batch whose commit failed),
        then new ones. Returns the number of stream entries recorded (script calls)."""
        streams = self._streams()
        if not streams:
            return 0
        self._rounds += 1
        if self._rounds % 50 == 1:
            self._take_over_abandoned(streams)
        batches = self._read(streams, "0") or self._read(streams, ">")
        if not batches:
            return 0
        events = [fields[b"d"] for _, entries in batches for _, fields in entries]
        try:
            self.store.record(join_entries(events))
        except psycopg.errors.InvalidTextRepresentation:
            self.store.record(upgrade_entries(events))
        pipe = self.queue.redis.pipeline(transaction=False)
        for s, entries in batches:
            ids = [eid for eid, _ in entries]
            pipe.xack(s, GROUP, *ids)
            pipe.xdel(s, *ids)
        pipe.execute()
        return sum(len(entries) for _, entries in batches)

    def drain(self) -> int:
        """Record until the streams are empty (tests, `dtq recover`, shutdown)."""
        total = 0
        while n := self.drain_once():
            total += n
        return total

    def run(self, stop: threading.Event, idle_wait_s: float = 0.05) -> None:
        """Record until ``stop`` is set; back off while Postgres or Redis is down."""
        backoff = idle_wait_s
        while not stop.is_set():
            try:
                n = self.drain_once()
                backoff = idle_wait_s
            except (Unavailable, redis.RedisError) as exc:
                log.warning("recorder waiting: %s", exc)
                n = 0
                backoff = min(backoff * 2, 5.0)
            except Exception:
                # Anything else (a schema not migrated, a bug) must not end the thread
                # silently: the entries stay pending, and the error repeats in the log.
                log.exception("recorder failed; retrying")
                n = 0
                backoff = min(max(backoff * 2, 1.0), 30.0)
            if n == 0:
                stop.wait(backoff)
            elif n < BATCH // 4:
                stop.wait(GATHER_S)
