"""examples/: the user project runs end to end as its README says, from a copy outside
the repository (nothing on PYTHONPATH: DTQ comes from the installed package)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from chalicelib.core.settings import Settings
from chalicelib.service.deps import Services
from tests.workers.procs import DTQ

ROOT = Path(__file__).resolve().parents[2]


def test_the_reports_example_runs_end_to_end(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    project = tmp_path / "reports"
    shutil.copytree(ROOT / "examples" / "reports", project)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTQ_")}
    env.pop("PYTHONPATH", None)
    env.update(
        {
            "DTQ_REDIS_URL": settings.redis_url,
            "DTQ_DATABASE_URL": settings.database_url,
            "DTQ_KEY_PREFIX": settings.key_prefix,
        }
    )
    worker = subprocess.Popen(
        [DTQ, "worker", "--tasks", "myapp.tasks", "--queues", "reports", "--offline-db", "j.db"],
        cwd=project,
        env=env,
    )
    try:
        done = subprocess.run(
            [sys.executable, "produce.py", "2026-12-06"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "render: {'day': '2026-12-06', 'pages': 4, 'attempt': 1}",
            "notify: ['sent 2026-12-06 to ops', 'sent 2026-12-06 to sales']",
            "refused: priority must be between 0 and 9",
        ]
        done = subprocess.run(
            [sys.executable, "produce_async.py"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"pages: {sum(range(1, 8))}"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert worker.returncode == 0
    keys = [t["idempotency_key"] for t in services.tasks.list(name="reports.render")[0]]
    assert keys.count("render:2026-12-06") == 1  # the producer's own key, kept


def test_the_reports_example_type_checks(tmp_path: Path) -> None:
    project = tmp_path / "reports"
    shutil.copytree(ROOT / "examples" / "reports", project)
    done = subprocess.run(
        [str(ROOT / ".venv/bin/mypy"), "--strict", "--no-incremental", str(project)],
        cwd=ROOT,  # where mypy finds dtq, as an installed package would be found
        env={**os.environ, "MYPYPATH": str(project)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout
