"""Moves transitions from the queues' Redis event streams into the Postgres record.

Every Lua state change appends its event to ``P:{queue}:events`` in the same atomic
step, so Redis and the record can never disagree about what happened, only about when
the record learns it. Recorders read the streams through one consumer group (several
processes share the load), hand each batch to Postgres as one JSON array in one
statement (history, snapshots, notifications: ``record_events``) and acknowledge only
after the commit. The recorder never decodes an event: it joins the entries' JSON text,
which keeps its cost per task near zero. If Postgres is down the entries stay pending and
are written when it returns; a replayed batch is a no-op (history and notifications are
keyed by (task, seq), rows guarded by version), and one whose history differs from the
record is logged and counted (``history_conflicts``).

A batch Postgres refuses (a value it cannot store) is split until each entry it refuses
stands alone; those are *parked* in ``dtq_parked_events`` and deleted from the stream like
recorded ones, so one bad entry cannot hold up every entry read with it. Both counts go to
the queue's stats hash, which ``GET /metrics`` serves (``task_parked_events_total``,
``task_history_conflicts_total``).

A task of a queue of durability "queue" has no row until its ``created`` event is
recorded. Recorders share the streams, so a round may hold a task's later transitions
while another recorder's round, not yet committed, holds its ``created`` event: the
entries naming such a task stay pending (the rest of the round is acknowledged) and are
recorded again, as a replay, on a later round. An entry still naming a task without a row
after ``ROWLESS_GRACE_MS`` is parked like a refused one (its other events are recorded).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
import redis

from chalicelib.core.errors import Unavailable
from chalicelib.queue.scripts import Queue
from chalicelib.record.store import Recorded, Row, Store
from chalicelib.service.dispatch import Dispatcher
from chalicelib.service.tasks import TaskService

log = logging.getLogger("dtq.recorder")

GROUP = "recorder"
#: Stream entries read per queue per round (an entry holds one script call's
#: transitions, up to ~100); one statement per round.
BATCH = 200
#: After a round that found less than a quarter batch, wait this long for more. A round
#: costs a statement, a commit and four round trips whatever its size, so PostgreSQL's
#: cost per task nearly halves from rounds of 20 tasks to rounds of 200, and an eager
#: recorder made rounds far below BATCH at peak drain rate (bench/HISTORY.md).
GATHER_S = 0.02
#: Pending entries of a consumer idle this long are taken over (it probably died).
CLAIM_IDLE_MS = 30_000
#: What a batch raises when PostgreSQL will refuse it however often it is retried: a value
#: it cannot store (DataError: a number too large for its column, text that is not JSON)
#: or a required field missing (IntegrityError: NOT NULL), or an entry that does not even
#: decode. Not among them: Unavailable (PostgreSQL unreachable), a schema not migrated
#: (ProgrammingError) or a bug; those keep the entries pending and are retried.
REFUSED = (psycopg.DataError, psycopg.IntegrityError, UnicodeDecodeError, json.JSONDecodeError)
#: Stats hash fields (per queue) of the recorder's two exceptions; chalicelib/api/metrics.py.
PARKED_FIELD = "parked"
CONFLICTS_FIELD = "history_conflicts"
#: How long an entry naming a task without a row waits for that row (ms of its stream
#: id's age): well past the takeover of an abandoned round (``CLAIM_IDLE_MS``), which is
#: the longest a ``created`` event can stay unrecorded while PostgreSQL answers.
ROWLESS_GRACE_MS = 300_000
#: How often held entries are tried again (s); new entries are recorded meanwhile.
HOLD_RETRY_S = 0.2
#: Characters of a parked entry shown in its log line (the table holds all of it).
LOGGED_ENTRY_CHARS = 2000
#: Conflicting history rows logged one per line per round; the rest as a count.
LOGGED_CONFLICTS = 20


def decode_entry(fields: dict[bytes, bytes]) -> list[dict[str, Any]]:
    """The transitions in one stream entry (every transition of one script call)."""
    data = json.loads(fields[b"d"])
    return data if isinstance(data, list) else [data]


def _is_array(text: bytes | None) -> bool:
    return text is not None and text[:1] == b"[" and text[-1:] == b"]"


def join_entries(entries: list[bytes]) -> str:
    """Stream entries (each a JSON array of events) → one JSON array, without decoding."""
    return "[" + ",".join(e.decode()[1:-1] for e in entries) + "]"


@dataclass(frozen=True)
class _Entry:
    """One stream entry, as the slow path of a round handles it."""

    stream: str
    queue: str
    id: bytes
    fields: dict[bytes, bytes]

    @property
    def text(self) -> bytes | None:
        return self.fields.get(b"d")

    def shown(self) -> str:
        """The entry as text PostgreSQL can store: invalid UTF-8 and NUL as \\xNN."""
        raw = self.text
        if raw is None:  # not written by our scripts: show every field
            return repr(
                {
                    k.decode(errors="backslashreplace"): v.decode(errors="backslashreplace")
                    for k, v in self.fields.items()
                }
            )
        return _storable(raw.decode(errors="backslashreplace"))


@dataclass
class _Tally:
    """What a round's slow path found, counted into the stats hashes with the XACKs."""

    parked: Counter[str] = field(default_factory=Counter)
    conflicts: list[Row] = field(default_factory=list)
    #: ids of tasks the round names that have no row yet (see the module's docstring)
    missing: list[str] = field(default_factory=list)

    def add(self, recorded: Recorded) -> None:
        self.conflicts += recorded.conflicts
        self.missing += recorded.missing


def _storable(text: str) -> str:
    return text.replace("\x00", "\\x00")


class Recorder:
    def __init__(
        self, queue: Queue, store: Store, consumer: str, *, hold_retry_s: float = HOLD_RETRY_S
    ) -> None:
        self.queue = queue
        self.store = store
        self.consumer = consumer
        self._grouped: set[str] = set()
        self._rounds = 0
        self._queue_of: dict[str, str] = {}  #: stream → its queue
        #: Pending entries of ours held for their tasks' rows (see the module's
        #: docstring), and when they were last tried (monotonic s).
        self._held: set[bytes] = set()
        self._held_tried = 0.0
        self.hold_retry_s = hold_retry_s

    def _streams(self) -> list[str]:
        streams = []
        for q in self.queue.known_queues():
            streams.append(self.queue.keys.queue(q).events)
            self._queue_of[streams[-1]] = q
        return streams

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
        then new ones. Returns the number of stream entries recorded or parked (script
        calls); the entries are deleted from their streams either way."""
        streams = self._streams()
        if not streams:
            return 0
        self._rounds += 1
        if self._rounds % 50 == 1:
            self._take_over_abandoned(streams)
        batches = self._read(streams, "0")
        if batches and self._only_held(batches):
            # Held entries are tried again at most every HOLD_RETRY_S; meanwhile new ones
            # are recorded, so an entry that waits cannot hold the rest up.
            if time.monotonic() - self._held_tried < self.hold_retry_s:
                batches = []
            else:
                self._held_tried = time.monotonic()
        batches = batches or self._read(streams, ">")
        if not batches:
            return 0
        events = [fields.get(b"d") for _, batch in batches for _, fields in batch]
        tally = _Tally()
        refused = None in events  # an entry our scripts did not write
        if not refused:
            try:
                tally.add(self.store.record(join_entries(cast(list[bytes], events))))
            except REFUSED:
                refused = True
        if refused:
            # Rare, so the slow path may cost what it likes: decoding, more statements.
            entries = [
                _Entry(s, self._queue_of.get(s, ""), eid, fields)
                for s, batch in batches
                for eid, fields in batch
            ]
            self._record_isolating(entries, tally)
        if tally.missing:
            batches = self._hold_rowless(batches, tally)
        if self._held:
            self._held.difference_update(eid for _, batch in batches for eid, _ in batch)
        pipe = self.queue.redis.pipeline(transaction=False)
        for s, batch in batches:
            ids = [eid for eid, _ in batch]
            pipe.xack(s, GROUP, *ids)
            pipe.xdel(s, *ids)
        if tally.parked or tally.conflicts:
            self._count(pipe, tally)
        pipe.execute()
        return sum(len(batch) for _, batch in batches)

    def _only_held(self, batches: list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]]) -> bool:
        return all(eid in self._held for _, batch in batches for eid, _ in batch)

    def _hold_rowless(
        self,
        batches: list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]],
        tally: _Tally,
    ) -> list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]]:
        """The round's entries to acknowledge: all but those naming a task that has no
        row yet, which stay pending for a later round, unless they have waited
        ``ROWLESS_GRACE_MS``: then they are parked, and acknowledged too."""
        needles = [m.encode() for m in dict.fromkeys(tally.missing)]
        now_ms = int(time.time() * 1000)
        kept: list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]] = []
        for stream, batch in batches:
            ack = []
            for eid, fields in batch:
                text = fields.get(b"d") or b""
                rowless = [n.decode() for n in needles if n in text]
                if not rowless:
                    ack.append((eid, fields))
                elif now_ms - int(eid.split(b"-")[0]) >= ROWLESS_GRACE_MS:
                    entry = _Entry(stream, self._queue_of.get(stream, ""), eid, fields)
                    error = "no row for task(s) " + ", ".join(rowless[:10])
                    self._park(entry, error + "; the entry's other events were recorded", tally)
                    ack.append((eid, fields))
                else:
                    self._held.add(eid)
                    self._held_tried = time.monotonic()
            if ack:
                kept.append((stream, ack))
        held = sum(len(b) for _, b in batches) - sum(len(b) for _, b in kept)
        if held:
            log.info("%d stream entries wait for their tasks' rows", held)
        return kept

    # -- the slow path: a batch PostgreSQL refused, and replays that conflict ---------

    def _record_isolating(self, entries: list[_Entry], tally: _Tally) -> None:
        """Record what PostgreSQL takes of the entries and park what it refuses, halving
        a refused batch until each refused entry stands alone: about 2·log2(n) statements
        per bad entry."""
        if len(entries) == 1:
            self._record_one(entries[0], tally)
            return
        texts = [e.text for e in entries]
        if all(_is_array(t) for t in texts):
            try:
                tally.add(self.store.record(join_entries(cast(list[bytes], texts))))
                return
            except REFUSED:
                pass
        mid = len(entries) // 2
        # Halves in stream order, each committed on its own. Order does not matter to the
        # record (history keyed by seq, rows guarded by version), and a crash midway
        # replays the recorded half harmlessly.
        self._record_isolating(entries[:mid], tally)
        self._record_isolating(entries[mid:], tally)

    def _record_one(self, entry: _Entry, tally: _Tally) -> None:
        """One entry: recorded as written, else parked with the reason."""
        raw = entry.text
        if raw is None:
            self._park(entry, 'the entry has no "d" field', tally)
            return
        # A text that is not an array would be mangled by join_entries (and "x" would
        # even pass as an empty one).
        if not _is_array(raw):
            self._park(entry, "the entry is not a JSON array of events", tally)
            return
        try:
            tally.add(self.store.record(join_entries([raw])))
        except REFUSED as exc:
            self._park(entry, _storable(f"{type(exc).__name__}: {exc}"), tally)

    def _park(self, entry: _Entry, error: str, tally: _Tally) -> None:
        """Store a refused entry in ``dtq_parked_events``; it is then acknowledged and
        deleted with the round's others. Raises (leaving the round pending) when even
        that fails, e.g. PostgreSQL went away."""
        shown = entry.shown()
        entry_id = entry.id.decode()
        new = self.store.park(
            stream=entry.stream, queue=entry.queue, entry_id=entry_id, entry=shown, error=error
        )
        if not new:  # parked before a crash that came before its XDEL: counted then
            return
        tally.parked[entry.queue] += 1
        if len(shown) > LOGGED_ENTRY_CHARS:
            shown = shown[:LOGGED_ENTRY_CHARS] + f"… ({len(shown)} characters)"
        # %r: one line, whatever the entry and the error hold.
        log.warning(
            "parked stream entry %s of %s, which could not be recorded: %r; entry: %r",
            entry_id,
            entry.stream,
            error,
            shown,
        )

    def _count(self, pipe: redis.client.Pipeline, tally: _Tally) -> None:
        """Log the round's history conflicts; count them and the parked entries into
        their queues' stats hashes (in the XACK pipeline: one round trip)."""
        for row in tally.conflicts[:LOGGED_CONFLICTS]:
            log.warning(
                "history conflict: task %s seq %s is recorded as %s at %s, a replayed batch "
                "says %s at %s; the recorded one is kept",
                row["task_id"],
                row["seq"],
                row["recorded_event"],
                row["recorded_at"],
                row["event"],
                row["at"],
            )
        if len(tally.conflicts) > LOGGED_CONFLICTS:
            log.warning(
                "history conflicts: %d more in the same round",
                len(tally.conflicts) - LOGGED_CONFLICTS,
            )
        # A conflict's queue is its task's; a task purged meanwhile has none, and is
        # only logged.
        conflicts = Counter(row["queue"] for row in tally.conflicts if row["queue"])
        for queue, n in tally.parked.items():
            pipe.hincrby(self.queue.keys.queue(queue).stats, PARKED_FIELD, n)
        for queue, n in conflicts.items():
            pipe.hincrby(self.queue.keys.queue(queue).stats, CONFLICTS_FIELD, n)

    def drain(self) -> int:
        """Record until the streams are empty (tests, `dtq recover`, shutdown)."""
        total = 0
        while n := self.drain_once():
            total += n
        return total

    def run(self, stop: threading.Event, idle_wait_s: float = 0.05) -> None:
        """Record until ``stop`` is set; back off while Postgres or Redis is down.

        Every round that found both answering also gives the dispatch backlog its turn
        (at most a look a second, chalicelib/service/dispatch.py): tasks accepted while Redis was
        down are dispatched from any process that records."""
        backoff = idle_wait_s
        dispatcher = Dispatcher(TaskService(self.queue, self.store))
        while not stop.is_set():
            reachable = False
            try:
                n = self.drain_once()
                backoff = idle_wait_s
                reachable = True
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
                reachable = True  # the backlog does not depend on what broke here
            if reachable:
                dispatcher.poll(time.monotonic())
            if n == 0:
                stop.wait(backoff)
            elif n < BATCH // 4:
                stop.wait(GATHER_S)
