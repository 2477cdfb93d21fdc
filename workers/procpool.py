"""``dtq worker --pool process``: handlers run in ``concurrency`` child processes, for
CPU-bound handlers that the GIL would serialise on slot threads.

The parent keeps everything else (claims, the one lease-extension loop, the journal,
acknowledgements, timeouts): each slot is a parent thread that owns one child, sends it
a job over a pipe and turns the answer into an ``Outcome`` exactly as a slot thread
would. Children are started with "spawn" (fork is slow here and unsafe with the
parent's threads) and import the ``--tasks`` modules once.

What a handler gets in a child (:class:`ProcessContext`): task id, name, queue, attempt,
max attempts, fence, a logger, the cancel flag (a per-child Event the parent sets when a
lease extension reports a cancel, on timeout and on shutdown), ``wait``, and
``enqueue`` / ``extend_lease`` / ``progress`` forwarded to the parent over the pipe
(``progress`` is checked in the child, so bad arguments raise there, and is as best
effort as from a slot thread). ``ctx.lock`` is
not available (a lock object cannot live across the process boundary): it raises.

Timeouts: unlike a thread, a child can be killed. An attempt past its
``timeout_seconds`` is reported failed by the worker as usual, and its child is killed
and replaced, so a hung or non-cooperative handler costs nothing after its timeout.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from typing import Any

from chalicelib.core.clock import now_ms
from chalicelib.core.errors import Cancelled, DTQError, Retry
from chalicelib.core.models import Outcome
from workers.context import Context, Host, Job, TaskContext, checked_progress
from workers.registry import Registry
from workers.slots import MAX_ERROR_CHARS, _failed

log = logging.getLogger("dtq.worker")

#: How often a slot thread looks at its job's cancel/timeout flags while the child runs.
POLL_S = 0.02
#: After shutdown's grace period, how long a cancelled child may take to answer before
#: it is killed (its task was already released, so its outcome is dropped either way).
CLOSE_WAIT_S = 1.0

_MP = multiprocessing.get_context("spawn")


class _Slot:
    __slots__ = ("cancel", "conn", "index", "proc")

    def __init__(self, index: int, proc: BaseProcess, conn: Connection, cancel: Event) -> None:
        self.index = index
        self.proc = proc
        self.conn = conn
        self.cancel = cancel


class ProcessPool:
    """The interface of :class:`workers.slots.SlotPool`, over child processes."""

    def __init__(self, size: int, run: Callable[[Job], None], *, modules: Sequence[str]) -> None:
        self.size = size
        self._run = run
        self._modules = list(modules)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._local = threading.local()
        self._closing_at = 0.0
        self._replaced = 0
        self._slots = [self._start_child(i) for i in range(size)]
        self._threads = [
            threading.Thread(target=self._loop, args=(s,), name=f"dtq-proc-{i}", daemon=True)
            for i, s in enumerate(self._slots)
        ]
        for t in self._threads:
            t.start()

    def _start_child(self, index: int) -> _Slot:
        parent_end, child_end = _MP.Pipe()
        cancel = _MP.Event()
        proc = _MP.Process(
            target=_child_main,
            args=(child_end, cancel, self._modules),
            name=f"dtq-proc-{index}",
            daemon=True,
        )
        proc.start()
        child_end.close()  # so that the child's death reads as EOF here
        return _Slot(index, proc, parent_end, cancel)

    # -- the SlotPool interface ----------------------------------------------------------

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def abandon(self, job: Job) -> None:
        """``job`` timed out: its slot thread kills and replaces the child. Called under
        the worker's lock, so it only marks the job."""
        job.abandoned = True

    def close(self, join_s: float = 0.0) -> None:
        """Stop every child. Unlike slot threads, children are always waited for (a few
        seconds at most) so that none outlives the worker."""
        self._closing_at = time.monotonic()
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(max(join_s, CLOSE_WAIT_S + 5.0))
        for slot in self._slots:
            if slot.proc.is_alive():
                slot.proc.kill()
            slot.proc.join(5.0)

    def stats(self) -> dict[str, Any]:
        alive = sum(1 for s in self._slots if s.proc.is_alive())
        return {"alive": alive, "replaced": self._replaced}

    def run_job(self, registry: Registry, host: Host, job: Job) -> Outcome | None:
        """Run one attempt in this slot thread's child (``registry`` is the child's own)."""
        slot: _Slot = self._local.slot
        lease = job.lease
        slot.cancel.clear()
        spec = (
            lease.task_id,
            lease.name,
            lease.queue,
            lease.attempt,
            lease.max_attempts,
            lease.fence,
            lease.payload,
        )
        try:
            slot.conn.send(("job", spec))
        except (OSError, ValueError, pickle.PicklingError) as exc:
            self._replace(slot)
            return _failed(job, f"{type(exc).__name__}: cannot hand the task to a child: {exc}")
        while True:
            closing = self._closing_at and time.monotonic() - self._closing_at > CLOSE_WAIT_S
            if job.abandoned or closing:
                self._replace(slot)  # the outcome is already decided (timed out / released)
                return None
            if job.canceled_or_timed_out and not slot.cancel.is_set():
                slot.cancel.set()
            if not slot.conn.poll(POLL_S):
                continue
            try:
                msg = slot.conn.recv()
            except (EOFError, OSError):
                slot.proc.join(1.0)
                code = slot.proc.exitcode
                self._replace(slot)
                return _failed(
                    job,
                    f"ChildProcessError: the process running the handler died (exit code {code})",
                )
            if msg[0] == "call":
                self._answer(slot, host, job, msg[1], msg[2])
                continue
            return _report(job, msg)

    # -- internals -----------------------------------------------------------------------

    def _loop(self, slot: _Slot) -> None:
        self._local.slot = slot
        while True:
            job = self._jobs.get()
            if job is None:
                break
            try:
                self._run(job)
            except BaseException:  # a bug in the worker itself: keep the slot alive
                log.exception("slot crashed running task %s", job.lease.task_id)
            slot = self._local.slot  # replaced if the child was killed
        try:
            slot.conn.send(None)  # an idle child exits on its own
        except OSError:
            pass
        slot.proc.join(2.0)

    def _replace(self, slot: _Slot) -> None:
        if slot.proc.is_alive():
            slot.proc.kill()
        slot.proc.join(5.0)
        slot.conn.close()
        if self._closing_at:
            return  # the slot thread is about to exit: no replacement needed
        self._replaced += 1
        fresh = self._start_child(slot.index)
        self._slots[slot.index] = fresh
        self._local.slot = fresh
        log.warning("replaced the child process of slot %d", slot.index)

    def _answer(
        self, slot: _Slot, host: Host, job: Job, method: str, args: tuple[Any, ...]
    ) -> None:
        try:
            if method == "enqueue":
                value: Any = host.enqueue_from(job, *args)
            elif method == "extend_lease":
                value = host.extend_job(job, *args)
            elif method == "progress":
                host.report_progress(job, *args)
                value = None
            else:
                raise DTQError(f"unknown context call {method!r}")
            reply: tuple[str, Any] = ("value", value)
        except Exception as exc:
            reply = ("raise", exc)
        try:
            slot.conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError):
            slot.conn.send(("raise", DTQError(f"{type(reply[1]).__name__}: {reply[1]}")))


def _report(job: Job, msg: tuple[Any, ...]) -> Outcome | None:
    """The child's answer, turned into a report exactly as :func:`slots.run_job` does."""
    kind = msg[0]
    if kind == "ok":
        lease = job.lease
        return Outcome(
            lease.queue,
            lease.task_id,
            lease.lease_token,
            True,
            msg[1],
            started_ms=job.started_ms,
            finished_ms=now_ms(),
        )
    if kind == "retry":
        return _failed(job, f"Retry: {msg[1]}", msg[2])
    if kind == "cancelled":
        if job.canceled:
            return None
        return _failed(job, f"Cancelled: {msg[1]}" + ("" if msg[1] else "canceled by the handler"))
    return _failed(job, str(msg[1]))


# -- the child side ----------------------------------------------------------------------


class ProcessContext:
    """What a handler gets in a process slot: :class:`workers.context.TaskContext` minus
    ``lock`` (see the module docstring)."""

    __slots__ = (
        "_cancel",
        "_conn",
        "attempt",
        "fence",
        "log",
        "max_attempts",
        "name",
        "queue",
        "task_id",
    )

    def __init__(self, conn: Connection, cancel: Event, spec: tuple[Any, ...]) -> None:
        self._conn = conn
        self._cancel = cancel
        (self.task_id, self.name, self.queue, self.attempt, self.max_attempts, self.fence, _) = spec
        self.log = logging.LoggerAdapter(logging.getLogger("dtq.task"), {"task_id": self.task_id})

    @property
    def cancelled(self) -> bool:
        """True once the task was canceled, its attempt timed out or the worker is leaving."""
        return self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; returns True early when the task is cancelled."""
        return self._cancel.wait(seconds)

    def extend_lease(self, seconds: float) -> int:
        """Forwarded to the worker (which also extends every lease in the background)."""
        return int(self._call("extend_lease", seconds))

    def enqueue(self, name: str, payload: dict[str, Any] | None = None, **options: Any) -> str:
        """Forwarded to the worker: journaled and pushed as from a slot thread."""
        return str(self._call("enqueue", name, payload or {}, options))

    def progress(self, fraction: float, message: str = "") -> None:
        """As :meth:`workers.context.TaskContext.progress`: checked here, reported by the
        worker (best effort)."""
        self._call("progress", *checked_progress(fraction, message))

    def lock(self, name: str, ttl_seconds: float = 30.0) -> Any:
        raise DTQError(
            "ctx.lock is not available with --pool process (use --pool thread, "
            "or chalicelib.queue.locks with your own Redis connection)"
        )

    def _call(self, method: str, *args: Any) -> Any:
        self._conn.send(("call", method, args))
        kind, value = self._conn.recv()
        if kind == "raise":
            raise value
        return value


def _child_main(conn: Connection, cancel: Event, modules: list[str]) -> None:
    # Ctrl-C reaches the whole process group and systemd signals every process of the
    # unit: only the parent decides when a running handler stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fmt = "%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"
    logging.basicConfig(level=logging.INFO, format=fmt)
    parent = multiprocessing.parent_process()
    if parent is not None:  # a worker killed with -9 must not leave its children behind
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    from workers import registry

    handlers = registry.load(modules)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        conn.send(_child_run(handlers, conn, cancel, msg[1]))


def _exit_with(parent: BaseProcess) -> None:
    parent.join()
    os._exit(1)


def _child_run(
    handlers: Registry, conn: Connection, cancel: Event, spec: tuple[Any, ...]
) -> tuple[Any, ...]:
    name, payload = spec[1], spec[6]
    handler = handlers.get(name)
    try:
        if handler is None:
            raise LookupError(f"no handler registered for task {name!r}")
        result = handler(payload, ProcessContext(conn, cancel, spec))
        return ("ok", "null" if result is None else json.dumps(result, separators=(",", ":")))
    except Retry as exc:
        delay = None if exc.delay_seconds is None else int(exc.delay_seconds * 1000)
        return ("retry", str(exc), delay)
    except Cancelled as exc:
        return ("cancelled", str(exc))
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        return ("error", text[:MAX_ERROR_CHARS])


def _both_are_contexts(thread: TaskContext, process: ProcessContext) -> tuple[Context, Context]:
    # Never called: mypy checks here that both slots' contexts are a dtq.Context.
    return thread, process
