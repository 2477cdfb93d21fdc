"""The fault suite: DTQ's guarantees under crashes, pauses and outages of its parts.

Each scenario starts its own Redis (AOF ``everysec``, ``noeviction``) and its own
PostgreSQL cluster, so it may kill them; runs real ``dtq`` processes against them; hurts
one part (kill -9, SIGSTOP, an outage) while tasks flow; waits until everything settled;
and then runs the history checker over what happened. Nothing is mocked.

Adding a scenario
-----------------

A scenario is a test function taking the ``cluster`` fixture (a
:class:`tests.faults.cluster.Cluster`, fresh servers and a migrated database, torn down
with every process it started even when the test fails)::

    from tests.faults.cluster import Cluster, task, wait_for

    def test_my_fault(cluster: Cluster) -> None:
        api = cluster.api()                          # dtq api, logged in as admin
        a = cluster.worker("a", lease_seconds=2)     # dtq worker --tasks tests.faults.fault_tasks
        ids = api.enqueue_batch([task(0.02) for _ in range(200)])
        wait_for(lambda: len(cluster.runs()) >= 20, 30, "runs to start", cluster.describe)
        a.kill()                                     # or cluster.redis.kill() / .restart(),
        cluster.worker("b")                          # cluster.postgres.kill() / .restart(),
        report = cluster.check("my fault", ids)      # a.pause() / a.resume(), api.kill() …
        report.assert_clean()

- ``task(sleep_s)`` is a ``fault.run`` body (``tests/faults/fault_tasks.py``): its handler
  logs a start and an end line per run (task id, attempt, fence, pid, times) to the run
  log, ``cluster.runs()``.
- ``cluster.check(name, ids, explanations=…)`` waits until every id is final, every run
  ended (or its process died) and every transition is recorded, runs
  ``tests/faults/checker.py`` and adds the report's row to the session's closing table
  (printed at the end of the run and written to ``.dtq/faults-report.md``).
  ``explanations`` are the history events that may explain a second run (default: lease
  losses and documented Redis data losses).
- ``report.assert_clean(known={"fence_reuse": "…defect…"})``: every guarantee held; a
  column named in ``known`` that is broken ends the test as xfail with that reason (only
  after every other column was found clean). Name a real defect there, never flakiness.
- Scenario-specific assertions go after it (the README rule the fault exercises, and
  that the fault really happened: a killed run re-ran, a late outcome was refused …).
- Wait with ``wait_for(condition, timeout, what, cluster.describe)``, never ``sleep``;
  keep a scenario to a few hundred tasks and a few seconds of load (2 cores, CI).
- ``cluster.spawn(name, *dtq_args)`` starts any other ``dtq`` verb; ``cluster.run`` runs
  one to completion (``cluster.recover()`` is ``dtq recover``). Logs are in the test's
  ``tmp_path``; a failing test's report shows every process's state and log tail.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.checker import ReportBook
from tests.faults.cluster import ROOT, Cluster

#: Where the closing table of a session is written (``DTQ_TEST_FAULTS_REPORT`` changes it).
REPORT_PATH = Path(os.environ.get("DTQ_TEST_FAULTS_REPORT", ROOT / ".dtq" / "faults-report.md"))

_BOOK = ReportBook()


@pytest.fixture(scope="session")
def fault_book() -> Iterator[ReportBook]:
    """The reports of every scenario of the session; written out when it ends."""
    yield _BOOK
    if _BOOK.reports:
        REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
        REPORT_PATH.write_text("# Fault suite\n\n" + _BOOK.markdown())


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, fault_book: ReportBook
) -> Iterator[Cluster]:
    c = Cluster(request.node.name, tmp_path / "logs", fault_book)
    try:
        yield c
    finally:
        c.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing scenario's report carries every process's state and log tail, and the
    closing table says how each scenario's test ended."""
    report = yield
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if not isinstance(cluster, Cluster):
        return report
    if report.failed:
        report.sections.append(("fault cluster processes", cluster.describe()))
    if report.when == "call" or report.failed:
        outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        for checked in cluster.reports:
            checked.outcome = outcome
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _BOOK.reports:
        terminalreporter.write_sep("-", "fault suite")
        terminalreporter.write(_BOOK.markdown())
        terminalreporter.write_line(f"(written to {REPORT_PATH})")
