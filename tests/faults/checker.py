"""The history checker: what a fault scenario's outcome must look like.

Inputs: the ids the scenario enqueued (accepted with 201), the run log written by
``tests/faults/fault_tasks.py`` (one start and one end line per handler run), the
PostgreSQL record (``dtq_tasks`` and ``dtq_task_events``) and the events that explain a
second run. The :class:`Report` names, per guarantee, what broke:

- ``lost``: an enqueued id with no record, or not in a final state (succeeded, dead,
  canceled) once the scenario settled;
- ``unexplained``: a run of a task under a new lease (a higher fence than an earlier
  run's) with no explaining event in the history between the grant of the previous lease
  (its ``claimed`` event) and its own start. Explanations are a lease loss (``lease_expired``, ``released``) and a documented loss of Redis data
  (``recovered`` from ``dtq recover``; ``redis_restarted`` as the Redis-restart work
  names it): a parameter, so a scenario says which it allows;
- ``fence_reuse``: two runs of one task, consecutive in start order, whose fences do not
  strictly increase (shared by two holders, or an older holder starting after a newer);
- ``overlaps``: two runs of one task with the same fence whose run times overlap (a run
  with no end line, its worker killed, counts as never ending: the checker cannot tell);
- ``missing_history``: a run with no ``claimed`` event of its attempt (and of its fence,
  where the history row carries one) at or before its start — each run is matched to its
  own event, earliest first; also a succeeded task without a ``succeeded`` event, or a
  task row whose fence is behind a run's;
- ``no_run``: a task recorded as succeeded without any run that completed.

The history rows store the attempt, not the fence (only the task row keeps the newest
fence), so a run is matched to its ``claimed`` event by attempt and time; a row whose
``data`` holds a ``fence`` must match it too.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

FINAL = frozenset({"succeeded", "dead", "canceled"})
#: A lease that ended without an outcome: the task is claimable again.
LEASE_LOSS = frozenset({"lease_expired", "released"})
#: Documented losses of Redis data, after which a finished or running task may run again.
DATA_LOSS = frozenset({"recovered", "redis_restarted"})
EXPLANATIONS = LEASE_LOSS | DATA_LOSS
#: Timestamps of the history are whole milliseconds of Redis's clock, the run log's are
#: microseconds of the same clock: this much slack absorbs the rounding.
SLACK_S = 0.05
#: Details kept per kind of problem in a report (the counts are always complete).
MAX_DETAILS = 20

#: The columns of the suite's closing table, in order.
COLUMNS = (
    "enqueued",
    "final",
    "lost",
    "runs",
    "reruns",
    "lease_losses",
    "refused",
    "unexplained",
    "fence_reuse",
    "overlaps",
    "missing_history",
    "no_run",
)
#: The columns that count broken guarantees (each must be 0).
VIOLATIONS = ("lost", "unexplained", "fence_reuse", "overlaps", "missing_history", "no_run")


@dataclass(frozen=True)
class Run:
    """One handler run, from the run log."""

    task_id: str
    attempt: int
    fence: int
    pid: int
    start: float
    #: None: no end line (the run was cut short, or is still going)
    end: float | None = None


@dataclass(frozen=True)
class Event:
    """One history row of a task."""

    seq: int
    at: float
    event: str
    attempt: int
    data: Mapping[str, Any]


@dataclass(frozen=True)
class TaskRecord:
    """A task's row and history in PostgreSQL."""

    status: str
    fence: int
    events: tuple[Event, ...]


def read_runs(path: Path) -> list[Run]:
    """Every run in the log; a start line and its end line make one run."""
    if not path.exists():
        return []
    starts: dict[tuple[str, int, int, int, str], Run] = {}
    ends: dict[tuple[str, int, int, int, str], float] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        kind, task_id, attempt, fence, pid, start = parts[:6]
        key = (task_id, int(attempt), int(fence), int(pid), start)
        if kind == "start":
            starts[key] = Run(task_id, int(attempt), int(fence), int(pid), float(start))
        elif kind == "end":
            ends[key] = float(parts[6])
        else:
            raise ValueError(f"run log {path}: unknown line {line!r}")
    return [
        Run(r.task_id, r.attempt, r.fence, r.pid, r.start, ends.get(k))
        for k, r in sorted(starts.items(), key=lambda kv: kv[1].start)
    ]


def read_record(database_url: str, ids: Collection[str]) -> dict[str, TaskRecord]:
    """The record of every id in ``ids`` that has a row."""
    wanted = list(ids)
    with psycopg.connect(
        database_url, autocommit=True, connect_timeout=5, row_factory=dict_row
    ) as conn:
        rows = conn.execute(
            "SELECT id::text AS id, status, fence FROM dtq_tasks WHERE id = ANY(%s::uuid[])",
            (wanted,),
        ).fetchall()
        events = conn.execute(
            "SELECT task_id::text AS task_id, seq, extract(epoch FROM at)::float8 AS at, event,"
            " attempt, data FROM dtq_task_events WHERE task_id = ANY(%s::uuid[])"
            " ORDER BY task_id, seq",
            (wanted,),
        ).fetchall()
    history: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        data = e["data"] if isinstance(e["data"], dict) else json.loads(e["data"] or "{}")
        history[e["task_id"]].append(
            Event(int(e["seq"]), float(e["at"]), e["event"], int(e["attempt"]), data)
        )
    return {
        r["id"]: TaskRecord(r["status"], int(r["fence"]), tuple(history.get(r["id"], ())))
        for r in rows
    }


@dataclass
class Report:
    """What one scenario's outcome broke; ``row()`` is its line of the closing table."""

    scenario: str
    enqueued: int = 0
    final: int = 0
    runs: int = 0
    reruns: int = 0
    #: how far the fault reached: leases lost (lease_expired, released events) …
    lease_losses: int = 0
    #: … and late outcomes refused as duplicates (duplicate_result events)
    refused: int = 0
    lost: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    fence_reuse: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    missing_history: list[str] = field(default_factory=list)
    no_run: list[str] = field(default_factory=list)
    #: final statuses of the enqueued tasks (succeeded, dead, …)
    statuses: Counter[str] = field(default_factory=Counter)
    #: ids in the run log that the scenario did not enqueue
    stray: set[str] = field(default_factory=set)
    #: the reason of each known defect that this report shows (set by ``assert_clean``)
    xfailed: list[str] = field(default_factory=list)
    #: how the scenario's test ended (passed, failed, xfailed), set when it has
    outcome: str = ""

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"scenario": self.scenario}
        for col in COLUMNS:
            value = getattr(self, col)
            row[col] = len(value) if isinstance(value, list) else value
        return row

    def details(self) -> str:
        lines = [f"{self.scenario}: {self.row()}", f"  statuses: {dict(self.statuses)}"]
        for kind in VIOLATIONS:
            items = getattr(self, kind)
            lines += [f"  {kind}: {item}" for item in items[:MAX_DETAILS]]
            if len(items) > MAX_DETAILS:
                lines.append(f"  {kind}: … {len(items) - MAX_DETAILS} more")
        return "\n".join(lines)

    def assert_clean(self, known: Mapping[str, str] | None = None) -> None:
        """Every guarantee held. ``known`` maps a column to the known defect that breaks
        it today: that column alone, if non-zero, ends the test as xfail with the reason
        (after every other column was checked and found clean), so a fixed defect turns
        the test green and a new breakage still fails it."""
        known = known or {}
        broken = [kind for kind in VIOLATIONS if getattr(self, kind) and kind not in known]
        assert not broken, f"guarantees broken ({', '.join(broken)}):\n{self.details()}"
        expected = [
            f"{kind}: {known[kind]}" for kind in VIOLATIONS if getattr(self, kind) and kind in known
        ]
        if expected:
            self.xfailed = expected
            pytest.xfail("; ".join(expected) + "\n" + self.details())


def check(
    scenario: str,
    enqueued: Iterable[str],
    runs: Iterable[Run],
    record: Mapping[str, TaskRecord],
    *,
    explanations: Collection[str] = EXPLANATIONS,
) -> Report:
    """Check one scenario's outcome (see the module's docstring)."""
    ids = list(dict.fromkeys(enqueued))
    wanted = set(ids)
    by_task: dict[str, list[Run]] = defaultdict(list)
    report = Report(scenario, enqueued=len(ids))
    for run in sorted(runs, key=lambda r: r.start):
        if run.task_id in wanted:
            by_task[run.task_id].append(run)
            report.runs += 1
        else:
            report.stray.add(run.task_id)
    for task_id in ids:
        rec = record.get(task_id)
        task_runs = by_task.get(task_id, [])
        report.reruns += max(0, len(task_runs) - 1)
        if rec is None:
            report.lost.append(f"{task_id}: no record")
            continue
        report.statuses[rec.status] += 1
        report.lease_losses += sum(e.event in LEASE_LOSS for e in rec.events)
        report.refused += sum(e.event == "duplicate_result" for e in rec.events)
        if rec.status in FINAL:
            report.final += 1
        else:
            report.lost.append(f"{task_id}: {rec.status}")
        if rec.status == "succeeded" and not any(r.end is not None for r in task_runs):
            report.no_run.append(f"{task_id}: succeeded, but no run completed")
        claimed_at = _match_claims(task_id, task_runs, rec, report)
        _check_runs(task_id, task_runs, claimed_at, rec, explanations, report)
    return report


def _check_runs(
    task_id: str,
    runs: list[Run],
    claimed_at: Mapping[Run, float],
    rec: TaskRecord,
    explanations: Collection[str],
    report: Report,
) -> None:
    # A new lease (a higher fence) needs a lease loss or data loss since the previous
    # lease was granted (its claimed event; the run's start when that is missing).
    by_lease = sorted(runs, key=lambda r: (r.fence, r.start))
    for prev, run in pairwise(by_lease):
        since = claimed_at.get(prev, prev.start)
        why = [
            e
            for e in rec.events
            if e.event in explanations and since - SLACK_S <= e.at <= run.start + SLACK_S
        ]
        if not why:
            report.unexplained.append(
                f"{task_id}: run (attempt {run.attempt}, fence {run.fence}, pid {run.pid}) after "
                f"run (attempt {prev.attempt}, fence {prev.fence}, pid {prev.pid}) with no "
                f"{'/'.join(sorted(explanations))} between; history: {_events(rec)}"
            )
    # Holders in the order they started: each must have a newer fence than the last.
    for prev, run in pairwise(runs):
        if run.fence <= prev.fence:
            how = "shared" if run.fence == prev.fence else "went back"
            report.fence_reuse.append(
                f"{task_id}: fence {how}: {prev.fence} (pid {prev.pid}, started {prev.start:.3f}) "
                f"then {run.fence} (pid {run.pid}, started {run.start:.3f}); history: {_events(rec)}"
            )
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            a_end = a.end if a.end is not None else float("inf")
            if a.fence == b.fence and b.start < a_end:
                report.overlaps.append(
                    f"{task_id}: fence {a.fence} held by pid {a.pid} ({a.start:.3f} to "
                    f"{a.end if a.end is not None else '?'}) and pid {b.pid} (from {b.start:.3f})"
                )


def _match_claims(
    task_id: str, runs: list[Run], rec: TaskRecord, report: Report
) -> dict[Run, float]:
    """Each run's own claimed event (earliest unused one of its attempt, and fence where
    the row has it, at or before its start); returns when each run's lease was granted."""
    claims = sorted((e for e in rec.events if e.event == "claimed"), key=lambda e: (e.at, e.seq))
    used: set[int] = set()
    claimed_at: dict[Run, float] = {}
    for run in runs:
        match = next(
            (
                e
                for e in claims
                if e.seq not in used
                and e.attempt == run.attempt
                and e.at <= run.start + SLACK_S
                and int(e.data.get("fence", run.fence)) == run.fence
            ),
            None,
        )
        if match is None:
            report.missing_history.append(
                f"{task_id}: no claimed event for the run (attempt {run.attempt}, fence "
                f"{run.fence}, pid {run.pid}, started {run.start:.3f}); history: {_events(rec)}"
            )
        else:
            used.add(match.seq)
            claimed_at[run] = match.at
    if runs and rec.fence < max(r.fence for r in runs):
        report.missing_history.append(
            f"{task_id}: the task row's fence {rec.fence} is behind a run's "
            f"{max(r.fence for r in runs)}"
        )
    if rec.status == "succeeded" and not any(e.event == "succeeded" for e in rec.events):
        report.missing_history.append(f"{task_id}: succeeded with no succeeded event")
    return claimed_at


def _events(rec: TaskRecord) -> str:
    return ", ".join(f"{e.event}@{e.at:.3f}(att {e.attempt})" for e in rec.events)


class ReportBook:
    """Every scenario's report of a session, for the closing table."""

    def __init__(self) -> None:
        self.reports: list[Report] = []

    def add(self, report: Report) -> None:
        self.reports.append(report)

    def markdown(self) -> str:
        head = ("scenario", *COLUMNS, "test")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for rep in self.reports:
            row = {**rep.row(), "test": rep.outcome or "?"}
            lines.append("| " + " | ".join(str(row[c]) for c in head) + " |")
        notes = [f"- {rep.scenario}: xfail — {x}" for rep in self.reports for x in rep.xfailed]
        return "\n".join(lines + (["", *notes] if notes else [])) + "\n"
