"""The history checker on made-up histories: each kind of broken guarantee is caught,
and a clean history passes (no servers: the checker's own logic only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.checker import (
    Event,
    ReportBook,
    Run,
    TaskRecord,
    check,
    read_runs,
)

T = "00000000-0000-0000-0000-00000000000a"


def ev(seq: int, at: float, event: str, attempt: int, **data: int) -> Event:
    return Event(seq, at, event, attempt, data)


def record(status: str, fence: int, *events: Event) -> dict[str, TaskRecord]:
    return {T: TaskRecord(status, fence, events)}


ONE_RUN = [Run(T, 1, 1, 100, 10.0, 10.5)]
ONE_RUN_HISTORY = (ev(1, 9.99, "claimed", 1), ev(2, 10.5, "succeeded", 1))
#: killed mid-run (no end), lease expired, run again elsewhere
TWO_RUNS = [Run(T, 1, 1, 100, 10.0, None), Run(T, 2, 2, 200, 13.0, 13.5)]
TWO_RUNS_HISTORY = (
    ev(1, 9.99, "claimed", 1),
    ev(2, 12.0, "lease_expired", 1),
    ev(3, 12.0, "retrying", 1),
    ev(4, 12.1, "queued", 1),
    ev(5, 12.99, "claimed", 2),
    ev(6, 13.5, "succeeded", 2),
)


def test_a_clean_history_passes() -> None:
    report = check("s", [T], TWO_RUNS, record("succeeded", 2, *TWO_RUNS_HISTORY))
    report.assert_clean()
    assert (report.final, report.runs, report.reruns, report.lease_losses) == (1, 2, 1, 1)


def test_a_task_not_final_or_not_recorded_is_lost() -> None:
    assert check("s", [T], ONE_RUN, record("running", 1, ONE_RUN_HISTORY[0])).lost
    assert check("s", [T], [], {}).lost == [f"{T}: no record"]


def test_a_second_run_without_a_lease_loss_is_unexplained() -> None:
    history = tuple(e for e in TWO_RUNS_HISTORY if e.event != "lease_expired")
    report = check("s", [T], TWO_RUNS, record("succeeded", 2, *history))
    assert len(report.unexplained) == 1
    # … unless the scenario allows another explanation (a documented data loss)
    history += (ev(7, 12.5, "redis_restarted", 1),)
    assert not check("s", [T], TWO_RUNS, record("succeeded", 2, *history)).unexplained
    allowed = {"lease_expired"}
    assert check(
        "s", [T], TWO_RUNS, record("succeeded", 2, *history), explanations=allowed
    ).unexplained


def test_fences_that_do_not_grow_in_start_order_are_reused() -> None:
    shared = [TWO_RUNS[0], Run(T, 2, 1, 200, 13.0, 13.5)]
    report = check("s", [T], shared, record("succeeded", 2, *TWO_RUNS_HISTORY))
    assert report.fence_reuse and "shared" in report.fence_reuse[0]
    stale = [Run(T, 2, 2, 200, 13.0, 13.5), Run(T, 1, 1, 100, 13.2, 13.3)]  # old holder late
    report = check("s", [T], stale, record("succeeded", 2, *TWO_RUNS_HISTORY))
    assert report.fence_reuse and "went back" in report.fence_reuse[0]


def test_two_runs_of_one_fence_at_once_overlap() -> None:
    runs = [Run(T, 1, 1, 100, 10.0, 11.0), Run(T, 1, 1, 200, 10.5, 10.8)]
    report = check("s", [T], runs, record("succeeded", 1, *ONE_RUN_HISTORY))
    assert len(report.overlaps) == 1
    apart = [Run(T, 1, 1, 100, 10.0, 10.2), Run(T, 1, 1, 200, 10.5, 10.8)]
    assert not check("s", [T], apart, record("succeeded", 1, *ONE_RUN_HISTORY)).overlaps


def test_a_run_without_its_claimed_event_is_missing_from_history() -> None:
    history = tuple(e for e in TWO_RUNS_HISTORY if e.seq != 5)
    report = check("s", [T], TWO_RUNS, record("succeeded", 2, *history))
    assert len(report.missing_history) == 1 and "attempt 2" in report.missing_history[0]
    # a claim recorded after the run started is not that run's
    late = (ev(1, 10.5, "claimed", 1), ev(2, 10.6, "succeeded", 1))
    assert check("s", [T], ONE_RUN, record("succeeded", 1, *late)).missing_history
    # where the history row carries the fence, it must be the run's
    other = (ev(1, 9.99, "claimed", 1, fence=7), ONE_RUN_HISTORY[1])
    assert check("s", [T], ONE_RUN, record("succeeded", 1, *other)).missing_history
    # a task row behind the runs, a success with no success event
    assert check("s", [T], ONE_RUN, record("succeeded", 0, *ONE_RUN_HISTORY)).missing_history
    no_success = check("s", [T], ONE_RUN, record("succeeded", 1, ONE_RUN_HISTORY[0]))
    assert no_success.missing_history == [f"{T}: succeeded with no succeeded event"]


def test_a_success_without_a_completed_run_is_flagged() -> None:
    cut = [Run(T, 1, 1, 100, 10.0, None)]
    assert check("s", [T], cut, record("succeeded", 1, *ONE_RUN_HISTORY)).no_run


def test_assert_clean_xfails_only_a_known_column_and_fails_the_others() -> None:
    history = tuple(e for e in TWO_RUNS_HISTORY if e.event != "lease_expired")
    report = check("s", [T], TWO_RUNS, record("succeeded", 2, *history))
    with pytest.raises(pytest.xfail.Exception, match="the known defect"):
        report.assert_clean(known={"unexplained": "the known defect"})
    assert report.xfailed == ["unexplained: the known defect"]
    with pytest.raises(AssertionError, match="unexplained"):
        report.assert_clean(known={"fence_reuse": "another defect"})
    book = ReportBook()
    book.add(report)
    report.outcome = "xfailed"
    assert "| s | 1 | 1 | 0 | 2 | 1 | 0 | 0 | 1 | 0 | 0 | 0 | 0 | xfailed |" in book.markdown()
    assert "- s: xfail — unexplained: the known defect" in book.markdown()


def test_the_run_log_pairs_start_and_end_lines(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    log.write_text(
        f"start {T} 1 1 100 10.000000\n"
        f"start {T} 2 2 200 13.000000\n"
        f"end {T} 2 2 200 13.000000 13.500000\n"
    )
    assert read_runs(log) == TWO_RUNS
    assert read_runs(tmp_path / "absent.log") == []
