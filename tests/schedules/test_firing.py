"""fire_due: exactly once per fire time, catch-up, overlap, corrupted rows. The clock
is injected: a simulated hour takes as long as the database work it causes."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from datetime import timedelta

import pytest

from chalicelib.core import cron
from chalicelib.core.taskspec import parse_task
from chalicelib.service.deps import Services
from chalicelib.service.firing import fire_due, idempotency_key
from chalicelib.service.schedules import Schedules
from tests.schedules.conftest import T0, body, fires_of, tasks_of


def test_three_schedulers_ticking_for_an_hour_fire_each_time_exactly_once(
    services: Services, schedules: Schedules
) -> None:
    every = schedules.create(body("every-minute", catchup="all"), T0)
    fives = schedules.create(body("every-five", "*/5 * * * *", catchup="latest"), T0)
    half = schedules.create(body("half-past", "30 * * * *", catchup="none"), T0)
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def loop(step_s: int, phase_s: int) -> None:
        try:
            start.wait()
            for t in range(phase_s, 3600 + step_s, step_s):
                fire_due(services.tasks, T0 + timedelta(seconds=min(t, 3600)))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=a) for a in ((7, 0), (11, 3), (13, 5))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    assert not errors, errors

    for created, expr, expected in (
        (every, "* * * * *", 60),
        (fives, "*/5 * * * *", 12),
        (half, "30 * * * *", 1),
    ):
        spec = cron.parse(expr, "UTC")
        times = cron.fire_times_between(spec, T0, T0 + timedelta(hours=1))
        assert len(times) == expected
        tasks = tasks_of(services, created["id"])
        keys = Counter(t["idempotency_key"] for t in tasks)
        assert set(keys) == {idempotency_key(created["id"], f) for f in times}
        assert set(keys.values()) == {1}, "a fire time produced more than one task"
        fires = fires_of(services, created["id"])
        assert [f["fire_at"] for f in fires] == times
        assert {f["task_id"] for f in fires} == {t["id"] for t in tasks}


@pytest.mark.parametrize(("catchup", "expected"), [("all", 10), ("latest", 1), ("none", 0)])
def test_catchup_after_a_ten_minute_outage(
    services: Services, schedules: Schedules, catchup: str, expected: int
) -> None:
    created = schedules.create(body("c", catchup=catchup), T0 - timedelta(seconds=30))
    assert fire_due(services.tasks, T0 + timedelta(seconds=5)).fired == 1  # 12:00
    # Down from 12:00:05 to 12:10:45: fire times 12:01 ... 12:10 were missed.
    report = fire_due(services.tasks, T0 + timedelta(minutes=10, seconds=45))
    assert report.fired == expected
    assert len(tasks_of(services, created["id"])) == 1 + expected
    # Back to normal: the next minute fires whatever the policy.
    assert fire_due(services.tasks, T0 + timedelta(minutes=11, seconds=1)).fired == 1


def test_overlap_skip_waits_for_the_previous_run_to_finish(
    services: Services, schedules: Schedules
) -> None:
    created = schedules.create(body("slow", overlap="skip"), T0)
    assert fire_due(services.tasks, T0 + timedelta(minutes=1, seconds=1)).fired == 1
    report = fire_due(services.tasks, T0 + timedelta(minutes=2, seconds=1))
    assert (report.fired, report.skipped) == (0, 1)  # the 12:01 task is still queued
    [first] = tasks_of(services, created["id"])
    services.tasks.cancel(str(first["id"]))  # finished (canceled is terminal)
    assert fire_due(services.tasks, T0 + timedelta(minutes=3, seconds=1)).fired == 1
    runs = schedules.get(created["id"], T0 + timedelta(minutes=3, seconds=2))["last_runs"]
    assert [r["status"] for r in runs] == ["queued", "skipped", "canceled"]
    assert runs[1]["task_id"] is None
    assert [r["fire_at"][11:16] for r in runs] == ["12:03", "12:02", "12:01"]


def test_overlap_allow_fires_while_the_previous_run_is_going(
    services: Services, schedules: Schedules
) -> None:
    created = schedules.create(body("fast"), T0)
    fire_due(services.tasks, T0 + timedelta(minutes=1, seconds=1))
    fire_due(services.tasks, T0 + timedelta(minutes=2, seconds=1))
    assert len(tasks_of(services, created["id"])) == 2


def test_a_retry_after_a_crash_reuses_the_task_the_crashed_attempt_created(
    services: Services, schedules: Schedules
) -> None:
    created = schedules.create(body("crashy", catchup="all"), T0)
    fire = T0 + timedelta(minutes=1)
    # The crashed tick committed the task, then died before its fire row committed.
    key = idempotency_key(created["id"], fire)
    spec = parse_task({"name": "job.crashy", "idempotency_key": key}, max_payload_bytes=1000)
    [(orphan, _)] = services.tasks.create([spec], schedule_id=created["id"])
    assert fire_due(services.tasks, fire + timedelta(seconds=1)).fired == 1
    [task] = tasks_of(services, created["id"])
    [row] = fires_of(services, created["id"])
    assert str(row["task_id"]) == orphan["id"] == str(task["id"])


def test_a_corrupted_schedule_does_not_stop_the_others(
    services: Services, schedules: Schedules
) -> None:
    good = schedules.create(body("good"), T0)
    bad_ids = [str(uuid.uuid4()) for _ in range(3)]
    with services.store.connection() as conn:
        for sid, (expr, zone, task) in zip(
            bad_ids,
            [
                ("not a cron", "UTC", {"name": "x"}),
                ("* * * * *", "Mars/Olympus", {"name": "x"}),
                ("* * * * *", "UTC", {"name": 5, "priority": "high"}),
            ],
            strict=True,
        ):
            conn.execute(
                "INSERT INTO dtq_schedules (id, name, cron, timezone, task, catchup, overlap,"
                " created_at) VALUES (%s, %s, %s, %s, %s, 'latest', 'allow', %s)",
                (sid, f"bad-{sid[:8]}", expr, zone, json.dumps(task), T0),
            )
    report = fire_due(services.tasks, T0 + timedelta(minutes=1, seconds=1))
    assert report.fired == 1 and sorted(report.failed) == sorted(bad_ids)
    assert len(tasks_of(services, good["id"])) == 1
    listed = {s["name"]: s for s in schedules.list(T0)}
    assert listed[f"bad-{bad_ids[0][:8]}"]["next_run_at"] is None
    assert schedules.get(bad_ids[0], T0)["next_fire_times"] == []


def test_disabled_schedules_do_not_fire_and_re_enabling_does_not_replay(
    services: Services, schedules: Schedules
) -> None:
    created = schedules.create(body("paused", catchup="all", enabled=False), T0)
    assert fire_due(services.tasks, T0 + timedelta(minutes=30)).fired == 0
    schedules.update(created["id"], {"enabled": True}, T0 + timedelta(minutes=30, seconds=10))
    # The 30 minutes it was disabled are not caught up; the next minute fires.
    assert fire_due(services.tasks, T0 + timedelta(minutes=31, seconds=1)).fired == 1
    assert len(tasks_of(services, created["id"])) == 1


def test_each_fire_creates_the_declared_task(services: Services, schedules: Schedules) -> None:
    created = schedules.create(
        body(
            "typed",
            task={
                "name": "reports.daily",
                "queue": "reports",
                "priority": 8,
                "payload": {"format": "pdf"},
                "max_attempts": 2,
            },
        ),
        T0,
    )
    fire_due(services.tasks, T0 + timedelta(minutes=1))
    [row] = tasks_of(services, created["id"])
    task = services.tasks.get(str(row["id"]))
    assert (task["name"], task["queue"], task["priority"]) == ("reports.daily", "reports", 8)
    assert task["payload"] == {"format": "pdf"} and task["max_attempts"] == 2
    assert task["schedule_id"] == created["id"]
    assert (
        task["idempotency_key"]
        == f"schedule:{created['id']}:{int((T0 + timedelta(minutes=1)).timestamp() * 1000)}"
    )


def test_run_now_enqueues_and_shows_in_last_runs(services: Services, schedules: Schedules) -> None:
    created = schedules.create(body("manual", enabled=False), T0)
    task = schedules.run(created["id"], T0 + timedelta(seconds=5))
    assert task["schedule_id"] == created["id"] and task["name"] == "job.manual"
    again = schedules.run(created["id"], T0 + timedelta(seconds=5))
    assert again["id"] != task["id"]
    runs = schedules.get(created["id"], T0)["last_runs"]
    assert {r["task_id"] for r in runs} == {task["id"], again["id"]}
