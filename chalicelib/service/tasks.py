"""The task service: creating, reading, canceling and retrying tasks over the queue
(Redis) and the record (PostgreSQL); what the HTTP edge, the workers and the schedules call.

Order of writes for a new task of a queue of durability "record" (the default): the
Postgres row commits first, then the task enters Redis; the reverse order could run a
task that has no record. When the Redis step fails, the task is noted in the dispatch
backlog, which every recorder loop empties within about a second of Redis answering
again (chalicelib/service/dispatch.py). A crash between the commit and that note leaves a
recorded task that only ``reconcile`` dispatches.

Durability "queue" (docs/guarantees.md): a create without an idempotency key is accepted
once its enqueue script ran in Redis; the script's ``created`` event carries the row,
which the recorder inserts with the task's later transitions. If Redis fails, the create
takes the record path instead (the row, then the backlog). Until the row is recorded, a
read finds the task through Redis (:meth:`TaskService.get`).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import redis

from chalicelib.core.clock import from_ms, iso
from chalicelib.core.errors import (
    Conflict,
    InvalidTransition,
    NotFound,
    Unavailable,
    ValidationError,
)
from chalicelib.core.ids import uuid7
from chalicelib.core.jsontext import compact
from chalicelib.core.models import TERMINAL, Backoff, Durability, Lease, NewTask, TaskStatus
from chalicelib.core.taskspec import TaskSpec, parse_task
from chalicelib.queue.scripts import Code, Queue
from chalicelib.queue.taskhash import LiveTask
from chalicelib.record.deliveries import Deliveries, merge_history
from chalicelib.record.store import Row, Store
from chalicelib.service import taskview
from chalicelib.service.groupcommit import GroupCommit
from chalicelib.service.payloads import MAX_OFFLOADED_BYTES, Payloads, resolve

log = logging.getLogger("dtq.client")

#: Tasks validated per piece of a streamed batch: about one 32 kB COPY buffer's worth.
STREAM_CHUNK = 100
#: Least wait for a PostgreSQL connection a shared commit is given, however long its
#: callers waited for the commit before it: with PostgreSQL up, a connection is lent at
#: once (or within milliseconds when all are busy), so this only bounds an outage's 503.
MIN_SHARED_WAIT_S = 0.2
#: Newest stream entries a read looks through for the task's unrecorded transitions
#: (normally the stream holds one recorder round: tens of entries).
UNRECORDED_SCAN = 500
#: Longest single blocking read of a wait: below the Redis client's socket timeout.
WAIT_SLICE_S = 0.5


class TaskService:
    """Tasks over both stores (``Services.tasks`` in the composition root)."""

    def __init__(
        self,
        queue: Queue,
        store: Store,
        *,
        max_payload_bytes: int = 262_144,
        payloads: Payloads | None = None,
    ) -> None:
        self.queue = queue
        self.store = store
        self.max_payload_bytes = max_payload_bytes
        #: Set with DTQ_PAYLOAD_BUCKET: larger payloads and results go to S3.
        self.payloads = payloads
        self._group = GroupCommit(self._commit_shared, self._dispatch)
        #: Concurrent single creates of queues of durability "queue" share script calls
        #: the same way (nothing to commit: accepting them is the enqueue itself).
        self._group_in_queue = GroupCommit(self._accept_in_queue, _nothing)
        #: When each single create waiting for a shared commit arrived (monotonic s).
        self._arrived: dict[str, float] = {}
        # A task never changes queue, so its id → queue lookup can be cached forever.
        self.queue_of = lru_cache(maxsize=100_000)(self._queue_of)

    # -- create ------------------------------------------------------------------

    def enqueue(
        self, name: str, payload: dict[str, Any] | None = None, **options: Any
    ) -> dict[str, Any]:
        """Enqueue one task (options as in ``POST /tasks``); returns the task."""
        body = {"name": name, "payload": payload or {}, **options}
        spec = parse_task(body, max_payload_bytes=self.payload_limit)
        return self.create([spec])[0][0]

    def enqueue_many(self, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Enqueue many tasks in one Postgres transaction and one Redis round trip."""
        if not bodies:
            return []
        if not any(isinstance(b, dict) and b.get("idempotency_key") is not None for b in bodies):
            return self._create_streamed(bodies)
        specs = [self._parse(b, i) for i, b in enumerate(bodies)]
        return [task for task, _ in self.create(specs)]

    def _parse(self, body: Any, i: int) -> TaskSpec:
        return parse_task(body, max_payload_bytes=self.payload_limit, prefix=f"tasks[{i}].")

    def _create_streamed(self, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """A batch without idempotency keys, where nothing can conflict: validated in
        chunks that are written to one COPY as they are ready, so that PostgreSQL stores
        a chunk while the next one is validated (the two had taken turns on two cores).
        Still all-or-nothing: a bad body aborts the COPY, and no row of it is stored."""
        now = self.queue.clock.now_ms()
        stored: list[NewTask] = []
        replies: list[dict[str, Any]] = []

        def chunks() -> Iterator[list[NewTask]]:
            for start in range(0, len(bodies), STREAM_CHUNK):
                part = bodies[start : start + STREAM_CHUNK]
                made = [
                    self._new_task(self._parse(b, i), now, None) for i, b in enumerate(part, start)
                ]
                replies.extend(map(taskview.from_new, made))  # built while PostgreSQL works
                stored.extend(map(self._offloaded, made))
                yield stored[start:]

        if self._all_in_queue_mode(bodies):
            for _ in chunks():  # validated in full before anything is written
                pass
            self._accept_in_queue(stored)
            return replies
        self.store.copy_tasks(chunks())
        self._dispatch(stored)
        return replies

    def create(
        self, specs: Sequence[TaskSpec], schedule_id: str | None = None
    ) -> list[tuple[dict[str, Any], bool]]:
        """Record then dispatch tasks, all-or-nothing in Postgres. Per spec: the task and
        whether it was created (False: an earlier request with its idempotency key)."""
        now = self.queue.clock.now_ms()
        new = [self._new_task(s, now, schedule_id) for s in specs]
        stored = [self._offloaded(t) for t in new]
        if len(stored) == 1 and stored[0].idempotency_key is None:
            if schedule_id is None and self._in_queue_only(stored):
                self._group_in_queue.submit(stored)
                return [(taskview.from_new(new[0]), True)]
            # The hot path of many concurrent single creates: nothing can conflict, so
            # the task may share its transaction and Redis round trip with others.
            self._arrived[stored[0].id] = time.monotonic()
            self._group.submit(stored)
            return [(taskview.from_new(new[0]), True)]
        existing = self.store.insert_tasks(stored)
        results: list[tuple[dict[str, Any], bool]] = []
        dispatch: list[NewTask] = []
        for task, kept, row in zip(new, stored, existing, strict=True):
            if row is None:
                dispatch.append(kept)
                results.append((taskview.from_new(task), True))
                continue
            if row["version"] == 0 and row["status"] in ("queued", "scheduled"):
                dispatch.append(_row_to_new_task(row))  # the first request may not have
            results.append((self._resolved(taskview.from_record(row)), False))
        self._dispatch(dispatch)
        return results

    @property
    def payload_limit(self) -> int:
        """Largest payload ``parse_task`` should accept: above ``max_payload_bytes`` only
        when it can be offloaded to S3."""
        return MAX_OFFLOADED_BYTES if self.payloads is not None else self.max_payload_bytes

    def _offloaded(self, task: NewTask) -> NewTask:
        # A cheap bound first: UTF-8 takes at most 4 bytes per character.
        if self.payloads is None or len(task.payload_json) * 4 <= self.max_payload_bytes:
            return task
        ref = self.payloads.offload_payload(task.id, task.payload_json)
        if ref is task.payload_json:
            return task
        return task._replace(payload=json.loads(ref), payload_json=ref)

    def _resolved(self, task: dict[str, Any]) -> dict[str, Any]:
        """The task with its offloaded payload and result fetched from S3."""
        if self.payloads is not None:
            task["payload"] = self.payloads.resolve(task["payload"])
            task["result"] = self.payloads.resolve(task["result"])
        return task

    def _commit_shared(self, tasks: list[NewTask]) -> None:
        """The group commit's statement, given what is left of its oldest caller's wait
        for a connection. Callers that arrive while a shared commit waits for an
        unreachable PostgreSQL wait for it to fail, then share the next one: given a full
        wait of its own, they answered 503 after two (3 s at the default 1.5 s), now
        after one (+ ``MIN_SHARED_WAIT_S`` at most)."""
        now = time.monotonic()
        arrived = min(self._arrived.pop(t.id, now) for t in tasks)
        wait_s = max(MIN_SHARED_WAIT_S, self.store.wait_s - (now - arrived))
        self.store.insert_tasks(tasks, wait_s=wait_s)

    def _durability(self, queue: Any) -> Durability:
        """The queue's durability; "record" when Redis cannot say (the path that works
        without Redis) or the name is not a queue's (validation answers for it)."""
        if not isinstance(queue, str):
            return Durability.RECORD
        try:
            return self.queue.durability(queue)
        except redis.RedisError:
            return Durability.RECORD

    def _all_in_queue_mode(self, bodies: Sequence[Any]) -> bool:
        """Whether every body of a batch names a queue of durability "queue" (asked before
        validation, which runs while the rows are written: a body that is not a task
        takes the record path, whose validation refuses it)."""
        queues = set()
        for body in bodies:
            queue = body.get("queue") or "default" if isinstance(body, dict) else None
            if not isinstance(queue, str):
                return False
            queues.add(queue)
        return all(self._durability(q) == Durability.QUEUE for q in queues)

    def _in_queue_only(self, tasks: Sequence[NewTask]) -> bool:
        return all(self._durability(t.queue) == Durability.QUEUE for t in tasks)

    def _accept_in_queue(self, tasks: Sequence[NewTask]) -> None:
        """Durability "queue": accepted once the enqueue script ran; the recorder writes
        the rows. If Redis fails (the script may or may not have run), the rows are
        written here, as the recorder would, and the tasks go to the dispatch backlog:
        accepted on the record path instead, so nothing is lost either way."""
        try:
            self.queue.enqueue_many(tasks, unrecorded=True)
        except redis.RedisError as exc:
            self.store.insert_created(tasks)
            self._note_undispatched(tasks, exc)

    def _dispatch(self, tasks: Sequence[NewTask]) -> None:
        try:
            self.queue.enqueue_many(tasks)
        except redis.RedisError as exc:
            self._note_undispatched(tasks, exc)

    def _note_undispatched(self, tasks: Sequence[NewTask], exc: redis.RedisError) -> None:
        """Committed, not in Redis: into the backlog that recorder loops dispatch from as
        soon as Redis answers (chalicelib/service/dispatch.py). Not a failure of the create: it
        is recorded, so the caller gets its 201."""
        try:
            self.store.note_undispatched([t.id for t in tasks])
        except Exception as note_exc:
            # Whatever keeps them out of the backlog (PostgreSQL gone too, a schema not
            # migrated yet), the tasks are committed: the create succeeded, and the
            # reconciler finds them.
            log.warning(
                "redis unavailable (%s) and the dispatch backlog not written (%r); "
                "%d recorded task(s) wait for the reconciler",
                exc,
                note_exc,
                len(tasks),
            )
            return
        log.warning(
            "redis unavailable (%s); %d recorded task(s) noted for dispatch when it answers again",
            exc,
            len(tasks),
        )

    @staticmethod
    def _new_task(spec: TaskSpec, now_ms: int, schedule_id: str | None) -> NewTask:
        if spec.run_at is not None:
            run_at = int(spec.run_at.timestamp() * 1000)
        else:
            run_at = now_ms + int((spec.delay_seconds or 0) * 1000)
        return NewTask(
            id=uuid7(now_ms),
            name=spec.name,
            queue=spec.queue,
            priority=spec.priority,
            payload=spec.payload,
            payload_json=spec.payload_json,
            max_attempts=spec.max_attempts,
            timeout_seconds=spec.timeout_seconds,
            backoff=spec.backoff,
            run_at_ms=run_at,
            created_at_ms=now_ms,
            scheduled=run_at > now_ms,
            idempotency_key=spec.idempotency_key,
            request_hash=spec.request_hash,
            lock_key=spec.lock_key,
            schedule_id=schedule_id,
            webhook_url=spec.webhook_url,
        )

    # -- read --------------------------------------------------------------------

    def _queue_of(self, task_id: str) -> str:
        try:
            queue = self.store.queue_of(task_id)
        except Unavailable:
            queue = self._unrecorded_queue(task_id)
            if queue is None:
                raise
        if queue is None:
            queue = self._unrecorded_queue(task_id)
        if queue is None:
            raise NotFound(f"task {task_id} not found")
        return queue

    def _unrecorded_queue(self, task_id: str) -> str | None:
        """The queue holding a task the record does not know yet (durability "queue")."""
        try:
            return self.queue.queue_holding(task_id)
        except redis.RedisError:
            return None

    def _row(self, task_id: str) -> tuple[Row | None, bool]:
        """The task's record, and whether it is one. A task of a queue of durability
        "queue" not recorded yet has the row its ``created`` event carries to the
        recorder; so it is read while PostgreSQL is down too."""
        try:
            row = self.store.get_task(task_id)
        except Unavailable:
            queue = self._unrecorded_queue(task_id)
            unrecorded = None if queue is None else self._created_row(queue, task_id)
            if unrecorded is None:
                raise
            return unrecorded, False
        if row is not None:
            return row, True
        queue = self._unrecorded_queue(task_id)
        if queue is None:  # in neither store
            return None, False
        unrecorded = self._created_row(queue, task_id)
        if unrecorded is None:  # recorded (its entry deleted) since the first look
            row = self.store.get_task(task_id)
            return row, row is not None
        return unrecorded, False

    def _created_row(self, queue: str, task_id: str) -> Row | None:
        try:
            created = self.queue.created_event(queue, task_id)
        except redis.RedisError:
            return None
        return None if created is None else taskview.row_from_created(created)

    def get(self, task_id: str, *, history: bool = True) -> dict[str, Any]:
        """The task: its record overlaid with its live Redis state (so a read right after
        a change sees it even before the recorder has caught up), plus its history."""
        row, recorded = self._row(task_id)
        if row is None:
            raise NotFound(f"task {task_id} not found")
        live = self._live(row["queue"], task_id)
        task = self._resolved(taskview.from_record(row, live))
        if history:
            # An unrecorded task has no history rows and no deliveries yet (the recorder
            # writes both): PostgreSQL is not asked, and may be down.
            past = self.store.history(task_id) if recorded else []
            events = [taskview.recorded_event(e) for e in past]
            if live is not None and live.version > int(row["version"]):
                events += self._unrecorded(row)
            deliveries = Deliveries(self.store).history(task_id) if recorded else []
            task["history"] = merge_history(taskview.creation_events(row) + events, deliveries)
        return task

    def _unrecorded(self, row: Row) -> list[dict[str, Any]]:
        """Transitions Redis made that the record has not caught up with yet, so that one
        answer's status and history agree (docs/api.md, "Consistency of reads"): the
        task's entries still in its event stream."""
        try:
            pending = self.queue.unrecorded_events(row["queue"], str(row["id"]), UNRECORDED_SCAN)
        except redis.RedisError:
            return []
        recorded = int(row["version"])
        return [
            taskview.stream_event(e)
            for e in sorted(pending, key=lambda e: int(e["v"]))
            if int(e["v"]) > recorded
        ]

    def list(
        self,
        *,
        status: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; ``created_after`` (inclusive) and ``created_before`` (exclusive)
        bound the creation time."""
        after = _decode_cursor(cursor) if cursor else None
        rows = self.store.list_tasks(
            status=status,
            queue=queue,
            name=name,
            limit=limit + 1,
            after=after,
            created_from=created_after,
            created_until=created_before,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1]) if more and rows else None
        return [taskview.from_record(r) for r in rows], next_cursor

    def wait(self, task_id: str, timeout_s: float, *, history: bool = False) -> dict[str, Any]:
        """The task once it is final (succeeded, dead or canceled), or as it is when
        ``timeout_s`` passes. Waits on the queue's event stream, so a finished task is
        seen within milliseconds and PostgreSQL is read once at each end, not polled."""
        row, _ = self._row(task_id)
        if row is None:
            raise NotFound(f"task {task_id} not found")
        queue = row["queue"]
        deadline = time.monotonic() + timeout_s
        after = self.queue.events_tail(queue)
        while True:
            live = self._live(queue, task_id)
            status = live.status if live is not None else row["status"]
            if status in TERMINAL or time.monotonic() >= deadline:
                return self.get(task_id, history=history)
            # Look again at least every slice (an entry trimmed unseen costs one slice),
            # and at once when one of the task's transitions comes.
            slice_end = min(deadline, time.monotonic() + WAIT_SLICE_S)
            while (left := slice_end - time.monotonic()) > 0:
                after, seen = self.queue.await_task_event(queue, task_id, after, left)
                if seen:
                    break

    def holds(self, task_id: str, lease_token: str) -> bool:
        """Whether ``lease_token`` is the lease of the task's current run."""
        live = self.queue.live(self.queue_of(task_id), task_id)
        token = live.lease_token if live is not None else None
        return token is not None and hmac.compare_digest(token.encode(), lease_token.encode())

    def progress(self, task_id: str, lease_token: str, fraction: float, message: str) -> bool:
        """The newest progress of the task, reported by its current holder (checked with
        ``progress_problem`` first); whether a ``progress`` event was recorded now (at
        most one a second per task; the task shows the newest report either way).
        Refused (409, 404) like a lease extension from anyone else."""
        queue = self.queue_of(task_id)
        return self.queue.progress(queue, task_id, lease_token, fraction, message)

    # -- claims over HTTP ----------------------------------------------------------

    def claim(
        self, queues: Sequence[str], worker_id: str, want: int, lease_ms: int
    ) -> tuple[Sequence[dict[str, Any]], int]:
        """Lease up to ``want`` tasks; each in full, and when to ask again if a rate
        limit held tasks back (ms)."""
        result = self.queue.claim(queues, worker_id, want, lease_ms)
        return self._leased(result.leases), result.retry_after_ms

    def _leased(self, leases: Sequence[Lease]) -> Sequence[dict[str, Any]]:
        """Each leased task in full. The record adds what Redis does not keep (creation
        time, idempotency key…); if PostgreSQL is down the leases are still handed out,
        with those fields null, since the tasks are already leased and must not be lost."""
        if not leases:
            return []
        lives = self.queue.live_many([(lease.queue, lease.task_id) for lease in leases])
        try:
            rows = {str(r["id"]): r for r in self.store.get_tasks([le.task_id for le in leases])}
        except Unavailable:
            rows = {}
        out = []
        for lease, live in zip(leases, lives, strict=True):
            row = rows.get(lease.task_id)
            task = (
                taskview.from_record(row, live)
                if row is not None
                else taskview.from_lease(lease, live)
            )
            # A worker gets the payload in full, wherever it is stored.
            task["payload"] = resolve(lease.payload, self.payloads)
            task.update(
                {
                    "status": "running",
                    "attempt": lease.attempt,
                    "attempts": lease.attempt,
                    "lease_token": lease.lease_token,
                    "fence": lease.fence,
                    "lease_expires_at": iso(from_ms(lease.lease_expires_ms)),
                }
            )
            out.append(task)
        return out

    def _live(self, queue: str, task_id: str) -> LiveTask | None:
        try:
            return self.queue.live(queue, task_id)
        except redis.RedisError:
            return None  # the record alone is still a correct (if older) answer

    # -- admin changes -------------------------------------------------------------

    def cancel(self, task_id: str) -> tuple[dict[str, Any], bool]:
        """Cancel; returns the task and whether it is canceled already (False: running,
        it ends canceled at its worker's next lease extension)."""
        queue = self.queue_of(task_id)
        try:
            code = self.queue.cancel(queue, task_id)
        except NotFound:
            row = self.store.get_task(task_id)
            if row is None:
                raise
            if row["status"] in TERMINAL:
                raise InvalidTransition(f"task {task_id} is already {row['status']}") from None
            self.restore(row)  # recorded but not (or no longer) in Redis
            code = self.queue.cancel(queue, task_id)
        return self.get(task_id, history=False), code == Code.OK

    def replay_dead(self, task_ids: Iterable[str]) -> int:
        """Replay each of these tasks that is dead now: back to its queue with attempts
        reset. A task that is not dead (canceled, running, unknown) is skipped, so the
        count says what moved. The one rule behind ``POST /dead-letter/replay`` and
        ``dtq dlq replay``."""
        return sum(self._replay_if_dead(t) for t in dict.fromkeys(task_ids))

    def dead_ids(self, queue: str | None, limit: int) -> Sequence[str]:
        """Dead tasks of a queue (every known queue when None), up to ``limit``: Redis's
        dead sets (current) plus the record's (tasks Redis lost)."""
        queues = [queue] if queue is not None else self.queue.known_queues()
        ids = dict.fromkeys(t for q in queues for t in self.queue.dead(q, limit))
        cursor: str | None = None
        while len(ids) < limit:
            page, cursor = self.list(status="dead", queue=queue, limit=500, cursor=cursor)
            ids.update((t["id"], None) for t in page)
            if cursor is None:
                break
        return list(ids)[:limit]

    def _replay_if_dead(self, task_id: str) -> bool:
        try:
            queue = self.queue_of(task_id)
            live = self.queue.live(queue, task_id)
            if live is not None:
                if live.status != TaskStatus.DEAD:
                    return False
                if self.queue.replay(queue, task_id) == Code.OK:
                    return True
            row = self.store.get_task(task_id)
            if row is None or row["status"] != TaskStatus.DEAD:
                return False
            return self.restore(row, status=TaskStatus.QUEUED, attempts=0, event="replayed")
        except (NotFound, Conflict):
            return False

    def retry(self, task_id: str) -> dict[str, Any]:
        """A dead or canceled task goes back to the queue with its attempts reset."""
        queue = self.queue_of(task_id)
        if self.queue.replay(queue, task_id) == Code.NOT_FOUND:
            row = self.store.get_task(task_id)
            if row is None or row["status"] not in ("dead", "canceled"):
                raise InvalidTransition(f"task {task_id} is not dead or canceled")
            self.restore(row, status=TaskStatus.QUEUED, attempts=0, event="replayed")
        return self.get(task_id, history=False)

    def restore(
        self,
        row: Row,
        *,
        status: TaskStatus | None = None,
        attempts: int | None = None,
        event: str = "recovered",
    ) -> bool:
        """Re-create a task's Redis state from its record (no-op if Redis has it)."""
        st = TaskStatus(status or row["status"])
        # A task that was running when Redis lost it has no lease any more: run it again.
        if st == TaskStatus.RUNNING:
            st = TaskStatus.QUEUED
        return self.queue.restore(
            _row_to_new_task(row),
            st,
            event=event,
            fence=row["fence"],
            attempts=row["attempts"] if attempts is None else attempts,
            version=row["version"],
        )

    def queue_stats(self) -> dict[str, dict[str, Any]]:
        queues = self.queue.known_queues()
        return self.queue.depths(queues)


def _nothing(tasks: Sequence[NewTask]) -> None:
    pass


def _row_to_new_task(row: Row) -> NewTask:
    return NewTask(
        id=str(row["id"]),
        name=row["name"],
        queue=row["queue"],
        priority=row["priority"],
        payload=row["payload"],
        payload_json=compact(row["payload"]),
        max_attempts=row["max_attempts"],
        timeout_seconds=row["timeout_seconds"],
        backoff=Backoff.from_json(row["backoff"]),
        run_at_ms=int(row["run_at"].timestamp() * 1000),
        created_at_ms=int(row["created_at"].timestamp() * 1000),
        scheduled=row["status"] == "scheduled",
        lock_key=row["lock_key"],
    )


def _encode_cursor(row: Row) -> str:
    return f"{row['created_at'].isoformat()}|{row['id']}"


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, task_id = cursor.split("|", 1)
        return datetime.fromisoformat(created), str(uuid.UUID(task_id))
    except ValueError:
        raise ValidationError(
            "cursor is invalid", details=[{"field": "cursor", "message": "is invalid"}]
        ) from None
