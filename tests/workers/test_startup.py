"""A new ``dtq worker`` claims first and starts the rest after (scaling from zero): it
runs a task queued before it existed, its recorder child still records it, and what its
first claim does not need is not imported before it (bench/spawn.py has the figure)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.service.deps import Services
from tests.helpers import wait_until
from tests.workers.conftest import SpawnWorker
from tests.workers.procs import ROOT
from workers.cli import VERB_MODULES, build_parser

#: Modules a Redis-mode worker must not import before its first task starts: other
#: verbs' (Chalice's local server, the dev stack, the bench, the scheduler), the API, the
#: recorder threads (its recorder is a child process), AWS clients.
NOT_BEFORE_FIRST_CLAIM = (
    "chalice",
    "chalicelib.api",
    "chalicelib.service.background",
    "schedules",
    "workers.devstack",
    "workers.cli.serve",
    "workers.cli.bench",
    "boto3",
)

#: A task module the worker loads from its folder: ``startup.probe`` writes what the
#: process holds when the handler starts.
PROBE = """
import gc, json, sys


def register(registry):
    def probe(payload):
        state = {
            "modules": sorted(sys.modules),
            "gc_enabled": gc.isenabled(),
            "frozen": gc.get_freeze_count(),
        }
        with open(payload["out"], "w") as f:
            json.dump(state, f)

    registry.add("startup.probe", probe)
"""


def record_status(services: Services, task_id: str) -> str | None:
    with services.store.connection() as conn:
        row = conn.execute("SELECT status FROM dtq_tasks WHERE id = %s", (task_id,)).fetchone()
    return None if row is None else str(row["status"])


def test_a_freshly_spawned_worker_runs_a_waiting_task_and_records_it(
    services: Services, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    (tmp_path / "startup_probe.py").write_text(PROBE)
    out = tmp_path / "probe.json"
    task = services.tasks.enqueue("startup.probe", {"out": str(out)})
    worker = spawn_worker("--tasks", "startup_probe")
    wait_until(
        lambda: services.tasks.get(task["id"])["status"] == "succeeded",
        timeout_s=30,
        what="the task queued before the worker to succeed",
    )
    # Its recorder child, started after the first claim, records it (no other recorder
    # runs here).
    wait_until(
        lambda: record_status(services, task["id"]) == "succeeded",
        timeout_s=30,
        what="the record to show the task succeeded",
    )
    assert worker.poll() is None
    state = json.loads(out.read_text())
    assert deferred(state["modules"]) == []
    # The collector, paused during the imports, is back on, the start-up heap frozen.
    assert state["gc_enabled"] is True
    assert state["frozen"] > 10_000


def test_dtq_worker_parses_its_flags_without_the_other_verbs_modules() -> None:
    code = (
        "import sys; from workers.cli import build_parser; "
        "build_parser('worker').parse_args(['worker', '--queues', 'a']); "
        "print('\\n'.join(sorted(sys.modules)))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    # Nor the worker's runtime: cmd_worker imports it once the collector is paused.
    assert deferred(imported, (*NOT_BEFORE_FIRST_CLAIM, "redis", "psycopg", "workers.worker")) == []


@pytest.mark.parametrize("verb", sorted(VERB_MODULES))
def test_each_verb_is_registered_by_the_module_named_for_it(verb: str) -> None:
    assert verb in verbs(build_parser(verb))


def test_no_verb_or_an_unknown_one_lists_every_verb() -> None:
    assert set(VERB_MODULES) <= verbs(build_parser()) == verbs(build_parser("nope"))
    assert not set(VERB_MODULES) & verbs(build_parser("status"))


def deferred(imported: list[str], names: tuple[str, ...] = NOT_BEFORE_FIRST_CLAIM) -> list[str]:
    """The modules of ``imported`` that are one of ``names`` or inside one."""
    return [m for m in imported if any(m == n or m.startswith(f"{n}.") for n in names)]


def verbs(parser: argparse.ArgumentParser) -> set[str]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(action.choices)
