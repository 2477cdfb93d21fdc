"""Schedules as code: `dtq schedules sync` creates, updates and deletes by name."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.core.errors import DTQError
from chalicelib.service.deps import Services
from chalicelib.service.schedules import Schedules
from schedules.as_code import sync
from tests.schedules.conftest import T0, body

ROOT = Path(__file__).parents[2]
REPORTS = """
[daily-report]
cron = "0 9 * * MON-FRI"
timezone = "Europe/Berlin"
overlap = "skip"

[daily-report.task]
name = "reports.daily"
queue = "reports"
payload = { format = "pdf" }

[cleanup]
cron = "@hourly"
task = { name = "cleanup.run" }
"""


def _sync(schedules: Schedules, folder: Path, dry_run: bool = False) -> list[str]:
    out = io.StringIO()
    sync(schedules, folder, dry_run=dry_run, out=out)
    return out.getvalue().splitlines()


def test_sync_creates_updates_and_deletes_only_file_schedules(
    schedules: Schedules, tmp_path: Path
) -> None:
    schedules.create(body("made-by-api"), T0)
    (tmp_path / "reports.toml").write_text(REPORTS)
    lines = _sync(schedules, tmp_path, dry_run=True)
    assert lines[:2] == [
        "+ cleanup (reports.toml): '@hourly' in UTC",
        "+ daily-report (reports.toml): '0 9 * * MON-FRI' in Europe/Berlin",
    ]
    assert "dry run" in lines[-1] and len(schedules.rows()) == 1
    _sync(schedules, tmp_path)
    rows = {r["name"]: r for r in schedules.rows()}
    assert rows["daily-report"]["source"] == "file:reports.toml"
    assert rows["daily-report"]["overlap"] == "skip"
    assert rows["daily-report"]["task"]["payload"] == {"format": "pdf"}
    assert rows["made-by-api"]["source"] is None
    assert _sync(schedules, tmp_path)[0].startswith("schedules in sync")

    # overlap removed from the file means its default again; cleanup's declaration is gone.
    (tmp_path / "reports.toml").write_text(
        REPORTS.split("[cleanup]")[0]
        .replace('overlap = "skip"', 'timezone = "UTC"')
        .replace('timezone = "Europe/Berlin"\n', "")
    )
    lines = _sync(schedules, tmp_path)
    assert (
        lines[0]
        == "~ daily-report (reports.toml): timezone 'Europe/Berlin' -> 'UTC'; overlap 'skip' -> 'allow'"
    )
    assert lines[1] == "- cleanup (reports.toml)"
    assert sorted(r["name"] for r in schedules.rows()) == ["daily-report", "made-by-api"]


def test_sync_refuses_bad_files_and_api_names(schedules: Schedules, tmp_path: Path) -> None:
    schedules.create(body("made-by-api"), T0)
    (tmp_path / "a.toml").write_text('[made-by-api]\ncron = "* * * * *"\ntask = {name = "t"}\n')
    with pytest.raises(DTQError, match="created through the API"):
        _sync(schedules, tmp_path)
    (tmp_path / "a.toml").write_text('[x]\ncron = "61 * * * *"\ntask = {name = "t"}\n')
    with pytest.raises(DTQError, match=r"a\.toml: schedule 'x': .*minute value 61"):
        _sync(schedules, tmp_path)
    (tmp_path / "a.toml").write_text('[x]\ncron = "* * * * *"\ntask = {name = "t"}\n')
    (tmp_path / "b.toml").write_text('[x]\ncron = "* * * * *"\ntask = {name = "t"}\n')
    with pytest.raises(DTQError, match=r"declared in a\.toml too"):
        _sync(schedules, tmp_path)
    (tmp_path / "b.toml").write_text("[x\n")
    with pytest.raises(DTQError, match=r"b\.toml"):
        _sync(schedules, tmp_path)
    assert [r["name"] for r in schedules.rows()] == ["made-by-api"]


def test_dtq_schedules_sync_command(services: Services, tmp_path: Path) -> None:
    (tmp_path / "reports.toml").write_text(REPORTS)
    s = services.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTQ_")}
    env |= {
        "DTQ_REDIS_URL": s.redis_url,
        "DTQ_DATABASE_URL": s.database_url,
        "DTQ_KEY_PREFIX": s.key_prefix,
    }
    cmd = [sys.executable, "-m", "workers.cli", "schedules", "sync", "--dir", str(tmp_path)]
    dry = subprocess.run(
        [*cmd, "--dry-run"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr
    assert "+ daily-report" in dry.stdout and "dry run: 2 change(s)" in dry.stdout
    assert Schedules(services.tasks).rows() == []
    done = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and "applied 2 change(s)" in done.stdout, done.stderr
    assert len(Schedules(services.tasks).rows()) == 2
    bad = subprocess.run(
        [*cmd[:-1], str(tmp_path / "nope")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("dtq: --dir")
