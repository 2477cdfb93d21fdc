"""Group commit: concurrent single-task creates share one statement (and its commit) and
one Redis round trip.

A durable enqueue costs a Postgres commit (0.2 to 0.4 ms here back to back, ≈ 0.1 of it the
WAL fsync) and a Redis round trip; paid per task, eight API threads top out near two
thousand tasks a second (2,436/s measured without group commit). Here the first
caller to arrive becomes the leader and commits, in its own thread, its task together
with every task waiting at that moment; callers arriving meanwhile wait, and when the
leader is done one of them leads the next batch with everything gathered since. A lone
caller therefore pays no thread hand-off at all, and a crowd shares each fsync. A caller
still returns only after its own row is committed and its task is in Redis, so nothing
about the guarantees changes — only how many tasks share each fsync.

Queues of durability "queue" use a second group whose commit is the enqueue script
itself (chalicelib/service/tasks.py): concurrent creates share script calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from chalicelib.core.models import NewTask

#: Tasks per shared transaction at most (one COPY).
MAX_BATCH = 500


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass
class _Pending:
    tasks: Sequence[NewTask]
    #: Held until the caller is woken, once: its batch is done, or it leads the next one.
    wake: threading.Lock = field(default_factory=_held_lock)
    done: bool = False
    error: BaseException | None = None


class GroupCommit:
    def __init__(
        self,
        commit: Callable[[list[NewTask]], object],
        dispatch: Callable[[list[NewTask]], None],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._commit = commit
        self._dispatch = dispatch
        self._max_batch = max_batch
        self._mutex = threading.Lock()
        self._waiting: list[_Pending] = []
        self._leading = False  #: a leader is at work, or has been woken to lead

    def submit(self, tasks: Sequence[NewTask]) -> None:
        """Commit and dispatch ``tasks`` together with whatever else is waiting; returns
        once they are committed (raises what the shared commit raised)."""
        me = _Pending(tasks)
        with self._mutex:
            follow = self._leading
            if follow:
                self._waiting.append(me)
            self._leading = True
        if follow:
            # Each caller has its own lock, released once by the leader before it: a
            # shared condition woke every waiting thread at the end of every batch.
            me.wake.acquire()
        if not me.done:
            self._lead(me)
        if me.error is not None:
            raise me.error

    def _lead(self, me: _Pending) -> None:
        with self._mutex:
            batch = self._take(me)
        tasks = [t for p in batch for t in p.tasks]
        error: BaseException | None = None
        try:
            self._commit(tasks)
            self._dispatch(tasks)  # before replying: a claim right after must see it
        except BaseException as exc:  # handed to every caller of this batch
            error = exc
        finally:
            with self._mutex:
                for p in batch:
                    p.error, p.done = error, True
                following = self._waiting.pop(0) if self._waiting else None
                self._leading = following is not None
            for p in batch[1:]:
                p.wake.release()
            if following is not None:
                following.wake.release()  # it leads the next batch: everyone waiting then

    def _take(self, me: _Pending) -> list[_Pending]:
        """This leader's batch: its own tasks first, then the oldest waiting (under the
        mutex)."""
        batch, size = [me], len(me.tasks)
        while self._waiting and size < self._max_batch:
            item = self._waiting.pop(0)
            batch.append(item)
            size += len(item.tasks)
        return batch
