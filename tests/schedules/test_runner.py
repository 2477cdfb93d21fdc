"""`dtq scheduler`: the app's scheduled functions, their expressions, and a real process
firing a `* * * * *` schedule."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import app as app_module
from chalicelib.core import cron
from chalicelib.core.clock import utcnow
from chalicelib.core.errors import ConfigError
from chalicelib.service.deps import Services
from chalicelib.service.firing import idempotency_key
from chalicelib.service.schedules import Schedules
from schedules.runner import aws_cron_to_standard, jobs_of, parse_expression, scheduled_event
from tests.helpers import wait_until
from tests.schedules.conftest import body, tasks_of

ROOT = Path(__file__).parents[2]


def test_the_apps_scheduled_functions_and_their_local_periods() -> None:
    jobs = {j.name: j for j in jobs_of(app_module.app, {"cron_tick": 1.0})}
    assert set(jobs) == {
        "cron_tick",
        "reap_leases",
        "reconcile",
        "retention",
        "record_flush",
        "deliver_notifications",
    }
    assert jobs["cron_tick"].period_s == 1.0  # rate(1 minute) in AWS
    assert jobs["reconcile"].period_s == 300
    retention = jobs["retention"]
    assert retention.expression == "cron(15 * * * ? *)" and retention.period_s is None
    at = datetime(2026, 11, 28, 12, 20, tzinfo=UTC)
    assert retention.next_after(at) == datetime(2026, 11, 28, 13, 15, tzinfo=UTC)
    with pytest.raises(ConfigError, match="no scheduled function 'nope'"):
        jobs_of(app_module.app, {"nope": 1.0})


def test_aws_expressions() -> None:
    assert parse_expression("f", "rate(1 minute)").period_s == 60
    assert parse_expression("f", "rate(2 hours)").period_s == 7200
    assert aws_cron_to_standard("0 12 ? * 2-6 *") == "0 12 * * 1-5"  # AWS MON-FRI
    assert aws_cron_to_standard("0/5 * ? * 1,7 *") == "0/5 * * * 0,6"
    assert aws_cron_to_standard("0 3 1 * ? *") == "0 3 1 * *"
    assert aws_cron_to_standard("0 3 ? * MON-FRI *") == "0 3 * * MON-FRI"
    spec = parse_expression("f", "cron(0 12 ? * 2-6 *)").spec
    assert spec is not None
    saturday = datetime(2026, 11, 28, tzinfo=UTC)
    assert cron.next_fire_times(spec, saturday, 1)[0] == datetime(2026, 11, 30, 12, tzinfo=UTC)
    for bad in ("rate(0.5 minutes)", "cron(0 12 L * ? *)", "cron(0 12 * * ? 2027)", "at(x)"):
        with pytest.raises(ConfigError):
            parse_expression("f", bad)


def test_the_event_is_what_eventbridge_delivers() -> None:
    event = scheduled_event("cron_tick", datetime(2026, 11, 28, 12, 0, 0, 700000, tzinfo=UTC))
    assert event["time"] == "2026-11-28T12:00:00Z"
    assert (event["source"], event["detail-type"], event["detail"]) == (
        "aws.events",
        "Scheduled Event",
        {},
    )
    assert set(event) == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }


def test_dtq_scheduler_process_fires_a_minutely_schedule(
    services: Services, tmp_path: Path
) -> None:
    now = utcnow()
    created = Schedules(services.tasks).create(body("minutely"), now)
    boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    # Tick as if the next minute were 2 s away instead of up to 60 s.
    offset_s = max(0.0, (boundary - now).total_seconds() - 2.0)
    s = services.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTQ_")}
    env |= {
        "DTQ_REDIS_URL": s.redis_url,
        "DTQ_DATABASE_URL": s.database_url,
        "DTQ_KEY_PREFIX": s.key_prefix,
        "DTQ_JWT_SECRET": str(s.jwt_secret),
    }
    log = tmp_path / "scheduler.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "scheduler", "--clock-offset", str(offset_s)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        [task] = wait_until(lambda: tasks_of(services, created["id"]), 30, "the first fire")
        assert task["idempotency_key"] == idempotency_key(created["id"], boundary)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    text = log.read_text()
    assert "Traceback" not in text, text
    assert len(tasks_of(services, created["id"])) == 1
