"""The dispatch backlog: committed tasks whose Redis step failed, put into Redis as soon
as it answers again.

A create commits the task's row first and then puts the task into Redis. When that Redis
step fails (Redis unreachable, or refusing writes), the create still answers 201 (the
task is recorded) and notes the task in ``dtq_dispatch_backlog``: one statement, paid on
that failure path only (chalicelib/service/tasks.py). Every recorder loop (``Recorder.run``: a
worker's recorder child or thread, the API's thread, ``dtq record``) runs a
:class:`Dispatcher`, which looks at the backlog about once a second while Redis answers,
takes its due rows (SKIP LOCKED, with a lease: several processes share the backlog, and
one that dies mid-batch leaves its rows to another), puts each task into Redis from its
record as recovery does, and deletes the rows. So a task accepted while Redis was down
is dispatched within about a second of Redis answering again, with or without
``dtq scheduler``.

Per row, from the task's record:

- finished (succeeded, dead, canceled): dropped, there is nothing to run;
- with transitions recorded (version > 0): dropped, it did reach Redis (only the reply
  was lost). If Redis has lost it since, that is recovery's business (the reconciler or
  ``dtq recover``, which also raise the epoch, chalicelib/service/epoch.py);
- otherwise restored (``TaskService.restore``, history event ``recovered``); a task Redis
  holds already is left untouched by ``enqueue.lua``, so a task is never added twice,
  whichever of several dispatchers, the reconciler or a late original call gets there.

The reconciler stays part of every deployment: a process that dies between a task's
commit and its backlog row, or a backlog insert that fails (PostgreSQL gone too), leaves
a recorded task that only the reconciler finds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from chalicelib.core.errors import Unavailable
from chalicelib.core.models import TERMINAL
from chalicelib.service.tasks import TaskService

log = logging.getLogger("dtq.dispatch")

#: Seconds between looks at the backlog while it is empty or was just emptied: one round
#: trip that writes nothing, per recorder loop.
POLL_S = 1.0
#: Backlog rows per batch (a statement to take them, one Redis call per task, a statement
#: to settle them). A full batch is followed by the next at the recorder's next round.
BATCH = 500
#: How long a batch's rows stay hidden from other dispatchers (a dispatcher that died).
LEASE_S = 30.0
#: Longest pause after unexpected failures in a row (doubling from ``POLL_S``): a schema
#: not migrated yet must not log a traceback every second from every recorder.
MAX_RETRY_S = 60.0


@dataclass
class Batch:
    taken: int = 0  #: backlog rows taken
    restored: int = 0  #: tasks put into Redis
    dropped: int = 0  #: rows of tasks finished, or in Redis already


class Dispatcher:
    def __init__(
        self,
        tasks: TaskService,
        *,
        poll_s: float = POLL_S,
        batch: int = BATCH,
        lease_s: float = LEASE_S,
    ) -> None:
        self.tasks = tasks
        self.poll_s = poll_s
        self.batch = batch
        self.lease_s = lease_s
        self._due_at = float("-inf")
        self._failures = 0

    def poll(self, now: float) -> Batch | None:
        """Dispatch a batch if one is due at ``now`` (monotonic seconds): the recorder
        loop calls this every round. Never raises: a failure is logged, and the backlog
        is looked at again after ``poll_s``. None when nothing was due or it failed."""
        if now < self._due_at:
            return None
        self._due_at = now + self.poll_s
        try:
            done = self.dispatch_once()
        except (Unavailable, redis.RedisError) as exc:
            log.warning("dispatcher waiting: %s", exc)
            return None
        except Exception:
            # Must not end the recorder loop that runs it: the rows stay, the error
            # repeats in the log (less and less often), the reconciler remains.
            self._failures += 1
            self._due_at = now + min(self.poll_s * 2**self._failures, MAX_RETRY_S)
            log.exception("dispatcher failed; retrying")
            return None
        self._failures = 0
        if done.taken == self.batch:
            self._due_at = now  # more may wait: the next round takes the next batch
        return done

    def dispatch_once(self) -> Batch:
        """Take one batch of due backlog rows, put their tasks into Redis, settle the
        rows. Redis failing midway settles what was done and raises."""
        rows = self.tasks.store.take_undispatched(self.batch, self.lease_s)
        out = Batch(taken=len(rows))
        if not rows:
            return out
        done: list[str] = []
        try:
            for row in rows:
                if (
                    row["status"] not in TERMINAL
                    and row["version"] == 0
                    and self.tasks.restore(row)
                ):
                    out.restored += 1
                else:
                    out.dropped += 1
                done.append(str(row["id"]))
        finally:
            undone = [str(r["id"]) for r in rows[len(done) :]]
            self.tasks.store.settle_undispatched(done, undone)
        log.info(
            "dispatch backlog: %d task(s) put into Redis, %d row(s) dropped",
            out.restored,
            out.dropped,
        )
        return out
