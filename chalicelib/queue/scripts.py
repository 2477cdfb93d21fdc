"""The Redis side of the queue: one typed wrapper per Lua script.

This module is the only caller of ``chalicelib/lua``. Script return codes become
exceptions in exactly one function, :func:`raise_for`.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from enum import IntEnum
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

from chalicelib.core.errors import (
    AlreadyFinished,
    ConfigError,
    InvalidTransition,
    LeaseLost,
    NotFound,
    TaskCanceled,
)
from chalicelib.core.jsontext import compact, decode
from chalicelib.core.models import (
    PROGRESS_EVERY_MS,
    Claim,
    Durability,
    Lease,
    NewTask,
    Outcome,
    TaskStatus,
    progress_text,
)
from chalicelib.queue import lua, taskhash
from chalicelib.queue.keys import Keys
from chalicelib.queue.reads import QueueReads

#: How many due/expired tasks one script call moves at most, so one call stays short.
SWEEP_BOUND = 200
#: Cap of tasks claimed per call.
MAX_CLAIM = 100
#: Tasks per enqueue script call: a 1,000-task call keeps Redis busy for a few ms only.
ENQUEUE_CHUNK = 1000
#: How long a process trusts the durability it read for a queue (s): a change made
#: through another process is followed within this time.
DURABILITY_TTL_S = 1.0
#: The queue meta field holding the durability ("queue"; absent: "record").
DURABILITY_FIELD = "dur"


class Code(IntEnum):
    """First element of every script's reply (see ``_lib.lua``)."""

    OK = 0
    NOT_FOUND = 1
    LEASE_LOST = 2
    ALREADY_FINISHED = 3
    CANCELED = 4
    INVALID_STATE = 5
    EXISTS = 6
    CANCEL_PENDING = 7
    UNREGISTERED = 8  #: enqueue.lua: the queue is not in the registry yet; nothing done


#: Reasons used by ``/tasks/sync`` for refused outcomes.
REASONS = {
    Code.NOT_FOUND: "not_found",
    Code.LEASE_LOST: "lease_lost",
    Code.ALREADY_FINISHED: "already_finished",
    Code.CANCELED: "canceled",
}


def durability_of(meta_value: str | None) -> Durability:
    """A queue's durability from its meta field (absent, or anything else: "record")."""
    return Durability.QUEUE if meta_value == Durability.QUEUE.value else Durability.RECORD


def raise_for(code: int, task_id: str) -> None:
    """The one mapping from script codes to exceptions."""
    if code in (Code.OK, Code.EXISTS, Code.CANCEL_PENDING):
        return
    if code == Code.NOT_FOUND:
        raise NotFound(f"task {task_id} not found")
    if code == Code.LEASE_LOST:
        raise LeaseLost(f"the lease of task {task_id} is no longer yours")
    if code == Code.ALREADY_FINISHED:
        raise AlreadyFinished(f"task {task_id} already finished")
    if code == Code.CANCELED:
        raise TaskCanceled(f"task {task_id} was canceled")
    raise InvalidTransition(f"task {task_id} is not in a state that allows this")


class Queue(QueueReads):
    """Atomic state changes of tasks in Redis (the reads are in :class:`QueueReads`)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        finished_ttl_ms: int = 86_400_000,
    ) -> None:
        super().__init__(client, keys)
        self.finished_ttl_ms = finished_ttl_ms
        self._scripts: dict[str, Script] = {
            name: client.register_script(lua.source(name)) for name in lua.script_names()
        }
        #: Called before the scripts are loaded into a Redis that lacks them (it
        #: restarted, failed over or was flushed) and before a queue is registered in a
        #: Redis without an epoch: chalicelib/service/epoch.py raises the epoch there if Redis may
        #: have lost writes. None: no record to check against (Redis-only tools, tests).
        self.on_new_server: Callable[[], object] | None = None
        #: queue → (durability, monotonic time read); see :meth:`durability`.
        self._durability: dict[str, tuple[Durability, float]] = {}

    # -- helpers -----------------------------------------------------------------

    def _k(self, queue: str) -> list[str]:
        qk = self.keys.queue(queue)
        return [
            qk.ready,
            qk.scheduled,
            qk.retrying,
            qk.running,
            qk.dead,
            qk.meta,
            qk.stats,
            qk.seq,
            qk.events,
            qk.signal,
            qk.task_prefix,
            qk.lock_prefix,
            qk.lockwait_prefix,
            qk.timeline_prefix,
        ]

    def _run(self, name: str, queue: str, args: Sequence[Any], client: Any = None) -> Any:
        script, keys = self._scripts[name], self._k(queue)
        if client is None:
            return self._call(script, keys, args)
        if isinstance(client, _OneByOne):
            return client.add(lambda: self._call(script, keys, args))
        # In a pipeline, redis-py would first ask SCRIPT EXISTS (one more round trip per
        # pipeline); call by SHA and let _pipelined reload the scripts on NOSCRIPT.
        return client.evalsha(script.sha, len(keys), *keys, *args)

    def _call(self, script: Script, keys: list[str], args: Sequence[Any]) -> Any:
        try:
            return self.redis.evalsha(script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self._reload()
            return self.redis.evalsha(script.sha, len(keys), *keys, *args)

    def _reload(self) -> None:
        """Redis has lost its script cache, so it is a new server process (a restart or
        a failover, which may have lost its newest writes) or was flushed. The epoch is
        checked before any script can run there again; if that fails (PostgreSQL
        unreachable), the scripts stay unloaded and the next call checks again."""
        if self.on_new_server is not None:
            self.on_new_server()
        for script in self._scripts.values():
            self.redis.script_load(script.script)

    def _pipelined(self, build: Callable[[Any], None]) -> list[Any]:
        """Build and run a pipeline of script calls; if Redis lost its script cache
        (restart, failover), load the scripts and run it again. Safe: with an empty cache
        no script of the pipeline ran, and the other commands in it are idempotent."""
        if isinstance(self.redis, RedisCluster):
            # redis-py refuses scripts in a cluster pipeline: the same calls, one by one,
            # each to its queue's node (a script call reloads itself there on NOSCRIPT).
            calls = _OneByOne(self.redis)
            build(calls)
            return calls.execute()
        for attempt in (1, 2):
            pipe = self.redis.pipeline(transaction=False)
            build(pipe)
            try:
                return list(pipe.execute())
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self._reload()
        raise AssertionError("unreachable")

    def remember_queues(self, queues: Iterable[str]) -> None:
        """Add queues to the registry ``P:queues`` (idempotent). Recorders, sweeps and
        stats find queues through this set. A process-local cache would go stale the
        moment Redis loses its data; enqueue.lua checks the queue's own flag instead.
        Under Cluster the registry lives on one node and each queue's flag on its own: a
        node that loses the registry alone forgets queues whose flag survived elsewhere,
        so reconciliation adds back every queue of the record's live tasks
        (chalicelib/service/recover.py)."""
        names = set(queues)
        if names:
            self.redis.sadd(self.keys.queues, *names)

    def check_eviction_policy(self, allow_evicting: bool) -> None:
        """Refuse a Redis that may evict keys: an evicted task would be silently lost.
        Under Cluster every primary is asked (each holds its own queues)."""
        if allow_evicting:
            return
        try:
            policies = self._each_primary(
                lambda node: self.redis.config_get("maxmemory-policy", **node).get(
                    "maxmemory-policy"
                )
            )
        except redis.ResponseError as exc:
            raise ConfigError(
                "Redis hides CONFIG; set DTQ_ALLOW_EVICTING_REDIS=true once you have checked "
                "that its maxmemory-policy is noeviction"
            ) from exc
        for node, policy in sorted(policies.items()):
            if policy not in (None, "noeviction"):
                where = f" (node {node})" if node else ""
                raise ConfigError(
                    f"Redis maxmemory-policy is {policy!r}{where}: it may evict queued tasks; "
                    "set it to noeviction (or DTQ_ALLOW_EVICTING_REDIS=true to accept the risk)"
                )

    # -- enqueue -----------------------------------------------------------------

    def enqueue_many(self, tasks: Sequence[NewTask], *, unrecorded: bool = False) -> list[bool]:
        """Add tasks in one pipelined round trip: one script call per queue and chunk.
        The tasks are recorded in PostgreSQL already, or, with ``unrecorded`` (durability
        "queue"), each carries its row in its ``created`` event for the recorder to
        insert. Returns, per task, whether it was added (False: it already existed)."""
        if not tasks:
            return []
        by_queue: dict[str, list[int]] = {}
        for i, t in enumerate(tasks):
            by_queue.setdefault(t.queue, []).append(i)
        chunks = [
            (q, idx[j : j + ENQUEUE_CHUNK])
            for q, idx in by_queue.items()
            for j in range(0, len(idx), ENQUEUE_CHUNK)
        ]

        def entry(t: NewTask) -> list[Any]:
            e = [t.id, t.status.value, str(t.run_at_ms), "", taskhash.static_fields(t)]
            if unrecorded:
                e.append(t.row_json())
            return e

        calls = [(queue, compact([entry(tasks[i]) for i in idx])) for queue, idx in chunks]
        replies = self._enqueue(calls)
        added = [False] * len(tasks)
        for (_, idx), codes in zip(chunks, replies, strict=True):
            for i, code in zip(idx, codes, strict=True):
                added[i] = code == Code.OK
        return added

    def restore(
        self,
        task: NewTask,
        status: TaskStatus,
        *,
        attempts: int,
        fence: int,
        version: int,
        event: str,
    ) -> bool:
        """Re-create a task hash from the record (recovery, replay of an expired hash)."""
        fields = taskhash.restored_fields(task, attempts=attempts, fence=fence, version=version)
        entry = [task.id, status.value, str(task.run_at_ms), event, [str(f) for f in fields]]
        [reply] = self._enqueue([(task.queue, compact([entry]))])
        return bool(reply[0] == Code.OK)

    def _enqueue(self, calls: Sequence[tuple[str, str]]) -> list[Any]:
        """Run ``enqueue.lua`` once per ``(queue, entries as JSON)``. A queue not yet in
        the registry answers UNREGISTERED: it is registered, then its call runs again."""
        replies = self._enqueue_once(calls)
        unknown = [i for i, r in enumerate(replies) if r[0] == Code.UNREGISTERED]
        if unknown:
            self._register({calls[i][0] for i in unknown})
            again = self._enqueue_once([calls[i] for i in unknown])
            for i, reply in zip(unknown, again, strict=True):
                if reply[0] == Code.UNREGISTERED:  # the flag did not hold: not a state to loop on
                    raise redis.RedisError(f"queue {calls[i][0]!r} could not be registered")
                replies[i] = reply
        return replies

    def _enqueue_once(self, calls: Sequence[tuple[str, str]]) -> list[Any]:
        if len(calls) == 1:  # a single create: a pipeline would only add its own cost
            queue, entries = calls[0]
            return [self._run("enqueue", queue, [entries])]

        def build(pipe: Any) -> None:
            for queue, entries in calls:
                self._run("enqueue", queue, [entries], client=pipe)

        return self._pipelined(build)

    def _register(self, queues: set[str]) -> None:
        # The registry first, then the epoch, then the flag enqueue.lua checks: a crash in
        # between leaves the flag unset, and the next enqueue registers the queue again
        # (SADD is idempotent). No task enters a queue whose meta lacks the epoch.
        self.remember_queues(queues)
        epoch = self.published_epoch()
        if epoch is None and self.on_new_server is not None:
            self.on_new_server()  # Redis lost (or never had) the epoch: check the record
            epoch = self.published_epoch()
        for queue in queues:
            meta = self.keys.queue(queue).meta
            if epoch is not None:
                self._set_epoch(meta, epoch)
            self.redis.hset(meta, "registered", 1)

    # -- epochs (chalicelib/service/epoch.py) ----------------------------------------------

    def server_run_ids(self) -> list[str]:
        """The run_id of every Redis server process behind this client (one per primary
        under Cluster): a new one is a restart or a failover."""
        infos = self._each_primary(lambda node: self.redis.info("server", **node))
        return sorted(str(i["run_id"]) for i in infos.values())

    def _each_primary(self, ask: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
        """``ask`` of every primary, by node name ("" for a plain Redis): ``ask`` gets the
        keyword arguments that aim a command at one node. One node at a time, because
        redis-py answers a command sent to several nodes with a dict by node, except
        when there is only one (a one-shard cluster), which answers bare."""
        if not isinstance(self.redis, RedisCluster):
            return {"": ask({})}
        primaries: list[Any] = self.redis.get_primaries()  # type: ignore[no-untyped-call]
        return {node.name: ask({"target_nodes": node}) for node in primaries}

    def published_epoch(self) -> int | None:
        """The deployment's epoch as Redis holds it (None: Redis has none)."""
        return self.published_check()[0]

    def published_check(self) -> tuple[int | None, str | None]:
        """(epoch, run_id of the server process last checked against the record)."""
        ep, run = self.redis.hmget(self.keys.epoch, "ep", "run")
        return (None if ep is None else int(ep)), (None if run is None else run.decode())

    def publish_epoch(self, epoch: int, checked_run: str | None = None) -> None:
        """Raise every copy of the epoch in Redis to ``epoch`` (never lowers one): each
        registered queue's meta, then the deployment's epoch hash, with the server process
        just checked (last, so that it is never marked checked before the queues know)."""
        for queue in self.known_queues():
            self._set_epoch(self.keys.queue(queue).meta, epoch)
        self._set_epoch(self.keys.epoch, epoch, checked_run)

    def _set_epoch(self, key: str, epoch: int, checked_run: str | None = None) -> None:
        # EVAL with the text, not EVALSHA: this runs while the scripts may be unloaded
        # (from the new-server hook itself), and it is rare.
        args = [epoch] if checked_run is None else [epoch, checked_run]
        self.redis.eval(self._scripts["set_epoch"].script, 1, key, *args)

    # -- claim and leases --------------------------------------------------------

    def claim(self, queues: Sequence[str], worker_id: str, max_tasks: int, lease_ms: int) -> Claim:
        """Lease up to ``max_tasks`` tasks, highest priority first across ``queues``."""
        want = max(1, min(max_tasks, MAX_CLAIM))
        order = self._order_by_head(queues) if len(queues) > 1 else list(queues)
        leases: list[Lease] = []
        retry_after = 0
        for queue in order:
            if len(leases) >= want:
                break
            reply = self._run(
                "claim",
                queue,
                [
                    worker_id,
                    want - len(leases),
                    lease_ms,
                    secrets.token_hex(12),
                    SWEEP_BOUND,
                    random.randrange(1, 2**31),
                    self.finished_ttl_ms,
                ],
            )
            if reply[1]:
                retry_after = max(retry_after, int(reply[1]))
            leases.extend(_lease(queue, item) for item in reply[2:])
        return Claim(leases, retry_after)

    def _order_by_head(self, queues: Sequence[str]) -> list[str]:
        """Queues ordered by the score of their best ready task (best first); queues with
        nothing ready keep their given order at the end (they may have due tasks)."""
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.zrange(self.keys.queue(queue).ready, 0, 0, withscores=True)
        heads = pipe.execute()
        ranked = sorted(
            range(len(queues)),
            key=lambda i: (heads[i][0][1] if heads[i] else float("inf"), i),
        )
        return [queues[i] for i in ranked]

    def extend(self, queue: str, task_id: str, token: str, extend_ms: int) -> tuple[int, bool]:
        """New lease deadline (server ms) and whether the task was canceled."""
        reply = self._run("extend_lease", queue, [task_id, token, extend_ms, self.finished_ttl_ms])
        raise_for(reply[0], task_id)
        return int(reply[1]), bool(reply[2])

    def complete(
        self, queue: str, task_id: str, token: str, result_json: str, worker_id: str = ""
    ) -> None:
        """Record a success; raises if the outcome is refused (see ``report.lua``)."""
        outcome = Outcome(queue, task_id, token, True, result_json, worker_id=worker_id)
        code, _ = self._report(queue, worker_id, [outcome])[0]
        raise_for(code, task_id)

    def fail(
        self,
        queue: str,
        task_id: str,
        token: str,
        error: str,
        retry_delay_ms: int | None = None,
        worker_id: str = "",
    ) -> TaskStatus:
        """Record a failed attempt; returns the task's new status (retrying/dead/canceled)."""
        outcome = Outcome(
            queue,
            task_id,
            token,
            False,
            error=error,
            retry_delay_ms=retry_delay_ms,
            worker_id=worker_id,
        )
        code, status = self._report(queue, worker_id, [outcome])[0]
        raise_for(code, task_id)
        return TaskStatus(status)

    def _report(
        self, queue: str, worker_id: str, outcomes: Sequence[Outcome], client: Any = None
    ) -> Any:
        args: list[Any] = [self.finished_ttl_ms, worker_id, random.randrange(1, 2**31)]
        for o in outcomes:
            delay = -1 if o.retry_delay_ms is None else max(0, o.retry_delay_ms)
            value = o.result_json if o.succeeded else o.error
            args += [o.task_id, o.token, "s" if o.succeeded else "f", value, delay]
        reply = self._run("report", queue, args, client=client)
        if client is not None:
            return None
        return _pairs(reply)

    def report_many(self, outcomes: Sequence[Outcome], worker_id: str = "") -> list[int]:
        """Outcomes of many tasks in one round trip (one script call per queue and
        reporting worker: the outcome's, else ``worker_id``); returns each outcome's
        code, in order. A refused outcome is a code, not an exception, so one never
        fails the rest."""
        if not outcomes:
            return []
        groups: dict[tuple[str, str], list[int]] = {}
        for i, o in enumerate(outcomes):
            groups.setdefault((o.queue, o.worker_id or worker_id), []).append(i)

        def build(pipe: Any) -> None:
            for (queue, worker_id), idx in groups.items():
                self._report(queue, worker_id, [outcomes[i] for i in idx], client=pipe)

        codes = [0] * len(outcomes)
        for idx, reply in zip(groups.values(), self._pipelined(build), strict=True):
            for i, (code, _) in zip(idx, _pairs(reply), strict=True):
                codes[i] = code
        return codes

    def accepted_digests(self, items: Sequence[tuple[str, str, str]]) -> list[str | None]:
        """Per ``(queue, task_id, lease token)``: the digest of the outcome accepted from
        that lease, if one was (chalicelib/service/outcomes.py)."""
        pipe = self.redis.pipeline(transaction=False)
        for queue, task_id, token in items:
            pipe.hget(self.keys.outcomes(queue, task_id), token)
        return [None if d is None else d.decode() for d in pipe.execute()]

    def remember_accepted(self, items: Sequence[tuple[str, str, str, str]]) -> None:
        """Keep ``(queue, task_id, lease token, digest)`` of accepted outcomes as long as
        a finished task's hash."""
        if not items:
            return
        pipe = self.redis.pipeline(transaction=False)
        for queue, task_id, token, digest in items:
            key = self.keys.outcomes(queue, task_id)
            pipe.hset(key, token, digest)
            pipe.pexpire(key, self.finished_ttl_ms)
        pipe.execute()

    def progress_code(
        self, queue: str, task_id: str, token: str, fraction: float, message: str = ""
    ) -> tuple[Code, bool]:
        """Store the newest progress of a running task held with ``token`` (checked by
        :func:`chalicelib.core.models.progress_problem` first); ``(code, recorded)``:
        whether a ``progress`` event was written now (at most one per
        ``PROGRESS_EVERY_MS``; a report held back is written when the lease ends)."""
        args = [task_id, token, progress_text(fraction), message, PROGRESS_EVERY_MS]
        reply = self._run("progress", queue, args)
        return Code(reply[0]), reply[0] == Code.OK and bool(reply[1])

    def progress(
        self, queue: str, task_id: str, token: str, fraction: float, message: str = ""
    ) -> bool:
        """:meth:`progress_code`, a refusal raised (LeaseLost, NotFound, AlreadyFinished,
        TaskCanceled); returns whether a ``progress`` event was written now."""
        code, recorded = self.progress_code(queue, task_id, token, fraction, message)
        raise_for(code, task_id)
        return recorded

    def release(self, queue: str, task_id: str, token: str) -> None:
        """Give a task back without counting the attempt (graceful shutdown)."""
        raise_for(self._run("release", queue, [task_id, token])[0], task_id)

    # -- admin -------------------------------------------------------------------

    def cancel(self, queue: str, task_id: str) -> Code:
        """Code.OK: canceled now; Code.CANCEL_PENDING: running, ends at its next lease
        extension. Raises for finished or unknown tasks."""
        code = Code(self._run("cancel", queue, [task_id, self.finished_ttl_ms])[0])
        raise_for(code, task_id)
        return code

    def replay(self, queue: str, task_id: str) -> Code:
        """Code.OK, or Code.NOT_FOUND when the hash is gone (restore from the record).
        Raises InvalidTransition unless the task is dead or canceled."""
        code = Code(self._run("replay", queue, [task_id])[0])
        if code != Code.NOT_FOUND:
            raise_for(code, task_id)
        return code

    def reap(self, queue: str) -> tuple[int, int]:
        """(promoted, expired) for one queue: the periodic sweep."""
        args = [SWEEP_BOUND, random.randrange(1, 2**31), self.finished_ttl_ms]
        reply = self._run("reap", queue, args)
        return int(reply[1]), int(reply[2])

    def configure(self, queue: str, *, durability: Durability | None = None, **fields: str) -> None:
        """Set queue meta fields (paused, concurrency, rl_rate, rl_burst; '' removes)
        and the queue's durability."""
        if durability is not None:
            fields[DURABILITY_FIELD] = "" if durability == Durability.RECORD else durability.value
        flat: list[str] = []
        for key, value in fields.items():
            flat += [key, value]
        self.remember_queues([queue])
        self._run("configure_queue", queue, flat)
        if durability is not None:
            self._durability[queue] = (durability, time.monotonic())

    def durability(self, queue: str) -> Durability:
        """The queue's durability, read from its meta at most once a second per process
        (a create asks for every task). Redis that lost the queue's meta answers the
        default, ``record``: the safe side."""
        now = time.monotonic()
        cached = self._durability.get(queue)
        if cached is not None and now - cached[1] < DURABILITY_TTL_S:
            return cached[0]
        value = self.redis.hget(self.keys.queue(queue).meta, DURABILITY_FIELD)
        durability = durability_of(None if value is None else value.decode())
        self._durability[queue] = (durability, now)
        return durability

    def extend_many(
        self, items: Sequence[tuple[str, str, str, int]]
    ) -> list[tuple[int, int, bool]]:
        """Extend many leases ``(queue, task_id, token, extend_ms)`` in one pipelined round
        trip (a worker's heartbeat); per item ``(code, expires_ms, canceled)``. A refused
        extension is a code, not an exception, so one lost lease never fails the rest."""
        if not items:
            return []

        def build(pipe: Any) -> None:
            for queue, task_id, token, extend_ms in items:
                args = [task_id, token, extend_ms, self.finished_ttl_ms]
                self._run("extend_lease", queue, args, client=pipe)

        return [
            (int(r[0]), int(r[1]), bool(r[2])) if r[0] == Code.OK else (int(r[0]), 0, False)
            for r in self._pipelined(build)
        ]


class _OneByOne:
    """Stands in for a pipeline under Redis Cluster: records the calls, then makes them
    in order. Plain commands are forwarded by name (``sadd``…); scripts come through
    :meth:`Queue._run`."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._calls: list[Callable[[], Any]] = []

    def add(self, call: Callable[[], Any]) -> None:
        self._calls.append(call)

    def __getattr__(self, command: str) -> Callable[..., None]:
        method = getattr(self._client, command)
        return lambda *args, **kwargs: self.add(lambda: method(*args, **kwargs))

    def execute(self) -> list[Any]:
        return [call() for call in self._calls]


def _pairs(reply: list[Any]) -> list[tuple[int, str]]:
    """(code, new status) per outcome from a ``report.lua`` reply."""
    return [
        (int(reply[i]), reply[i + 1].decode() if isinstance(reply[i + 1], bytes) else reply[i + 1])
        for i in range(1, len(reply), 2)
    ]


def _lease(queue: str, item: list[Any]) -> Lease:
    task_id, name, pri, payload, max_att, tmo, att, fence, token, expiry, lock_key = item
    return Lease(
        task_id.decode(),
        queue,
        name.decode(),
        decode(payload.decode()),
        int(pri),
        int(att),
        int(max_att),
        int(tmo),
        int(fence),
        token.decode(),
        int(expiry),
        lock_key.decode() if lock_key else None,
    )
