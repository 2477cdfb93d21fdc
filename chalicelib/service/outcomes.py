"""Outcomes that workers report: one set of rules for both transports.

``POST /tasks/sync`` (HTTP workers) and the Redis transport (``dtq worker`` in Redis
mode) both come here, so the rules hold in both modes by construction (docs/api.md):

- the first terminal outcome of a task wins; a late success (its lease expired) is still
  accepted while nobody else finished the task — ``report.lua`` decides both;
- a refused outcome gets a reason (``already_finished``, ``canceled``, ``lease_lost``,
  ``not_found``) and is counted as a duplicate;
- re-sending an outcome is harmless: it never changes the task again. Over HTTP, where
  a lost reply makes workers re-send routinely, one already accepted from the same lease
  token is also recognised by its digest (kept per task in Redis as long as the task's
  hash) and answered "accepted" again without touching the task, its history or the
  duplicate counter; an outcome repeated within one report gets the verdict of its first
  copy. A Redis-mode worker re-sends only after a report whose reply it lost, so it
  skips that bookkeeping (three Redis commands and two round trips per outcome, a
  sizeable share of the worker's CPU per task) and such a re-send is refused as
  ``already_finished``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from chalicelib.core.models import Outcome
from chalicelib.queue.scripts import REASONS, Code, Queue


def digest(outcome: Outcome) -> str:
    """What makes two reports of one lease's outcome the same outcome."""
    what = f"s:{outcome.result_json}" if outcome.succeeded else f"f:{outcome.error}"
    return hashlib.sha256(what.encode()).hexdigest()[:32]


def report(
    queue: Queue,
    outcomes: Sequence[Outcome],
    *,
    recognise_resends: bool = True,
    worker_id: str = "",
) -> list[str | None]:
    """Record the outcomes (each by its worker, else ``worker_id``); per outcome, None
    when accepted, else the refusal reason."""
    if not outcomes:
        return []
    if not recognise_resends:
        return [
            None if code == Code.OK else REASONS.get(Code(code), "invalid_state")
            for code in queue.report_many(outcomes, worker_id)
        ]
    digests = [digest(o) for o in outcomes]
    known = queue.accepted_digests([(o.queue, o.task_id, o.token) for o in outcomes])
    fresh: dict[tuple[str, str, str], int] = {}  # ident → index among those sent
    sent: list[int] = []
    for i, (o, d) in enumerate(zip(outcomes, digests, strict=True)):
        ident = (o.task_id, o.token, d)
        if known[i] != d and ident not in fresh:
            fresh[ident] = len(sent)
            sent.append(i)
    codes = queue.report_many([outcomes[i] for i in sent], worker_id)
    queue.remember_accepted(
        [
            (outcomes[i].queue, outcomes[i].task_id, outcomes[i].token, digests[i])
            for i, code in zip(sent, codes, strict=True)
            if code == Code.OK
        ]
    )
    verdicts: list[str | None] = []
    for o, d, was in zip(outcomes, digests, known, strict=True):
        code = Code.OK if was == d else Code(codes[fresh[(o.task_id, o.token, d)]])
        verdicts.append(None if code == Code.OK else REASONS.get(code, "invalid_state"))
    return verdicts
