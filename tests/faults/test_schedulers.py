"""Two schedulers tick the same schedules; one is killed (kill -9) mid catch-up. Each
fire time of each schedule must enqueue exactly one task (chalicelib/service/firing.py)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from functools import partial

from tests.faults.cluster import FAST_BACKOFF, Cluster, Proc, wait_for

SCHEDULES = 12
#: The schedulers' clock runs this far ahead, so each schedule (catchup "all") starts with
#: about this many minutes of fire times to catch up on: a burst that both share.
AHEAD = timedelta(minutes=20)
#: Real seconds from the start of the scenario until the schedulers' clock crosses a whole
#: minute: a live fire after the catch-up, with both schedulers ticking again.
BOUNDARY_AFTER_S = 15.0
TICK = "cron_tick=0.2"  # both tick often, so both take part in the burst


def _ticking(scheduler: Proc) -> bool:
    return "scheduler: " in scheduler.text()


def test_two_schedulers_one_killed_fire_each_time_exactly_once(cluster: Cluster) -> None:
    api = cluster.api()
    cluster.worker("a", concurrency=4)
    t0 = time.time()
    # The fake minute M that the schedulers' clock reaches BOUNDARY_AFTER_S from now.
    boundary = datetime.fromtimestamp(t0, UTC).replace(second=0, microsecond=0) + AHEAD
    offset = (boundary - datetime.fromtimestamp(t0 + BOUNDARY_AFTER_S, UTC)).total_seconds()
    s1 = cluster.scheduler("s1", "--clock-offset", str(offset), "--every", TICK)
    s2 = cluster.scheduler("s2", "--clock-offset", str(offset), "--every", TICK)
    for s in (s1, s2):
        wait_for(partial(_ticking, s), 30, f"{s.name} to tick", cluster.describe)
    ids = []
    for i in range(SCHEDULES):
        status, body = api.call(
            "POST",
            "/schedules",
            {
                "name": f"every-minute-{i}",
                "cron": "* * * * *",
                "timezone": "UTC",
                "catchup": "all",
                "overlap": "allow",
                "task": {
                    "name": "fault.run",
                    "payload": {"sleep": 0},
                    "max_attempts": 20,
                    "backoff": FAST_BACKOFF,
                },
            },
        )
        assert status == 201, body
        ids.append(body["id"])

    def fires() -> int:
        with cluster.pg() as conn:
            return len(conn.execute("SELECT 1 FROM dtq_schedule_fires").fetchall())

    # Mid-burst: a fire's task may be committed while its fire row is not (firing.py's
    # third layer), and the killed one's schedule row locks must be let go.
    wait_for(lambda: fires() >= SCHEDULES * 5, 30, "the catch-up to be under way", cluster.describe)
    s1.kill()
    killed_at = fires()
    s1b = cluster.scheduler("s1b", "--clock-offset", str(offset), "--every", TICK)

    def all_fired_at_boundary() -> bool:
        with cluster.pg() as conn:
            rows = conn.execute("SELECT last_fire_at FROM dtq_schedules").fetchall()
        return len(rows) == SCHEDULES and all(r["last_fire_at"] == boundary for r in rows)

    wait_for(all_fired_at_boundary, 60, "every schedule to fire at the boundary", cluster.describe)
    for s in (s2, s1b):  # before the schedulers' clock reaches the next minute
        assert s.terminate() == 0, s.describe()

    with cluster.pg() as conn:
        schedules = conn.execute("SELECT id::text AS id, created_at FROM dtq_schedules").fetchall()
        fired = conn.execute(
            "SELECT schedule_id::text AS sid, fire_at, task_id::text AS task_id,"
            " skipped FROM dtq_schedule_fires"
        ).fetchall()
        tasks = conn.execute(
            "SELECT id::text AS id, schedule_id::text AS sid, idempotency_key FROM dtq_tasks"
        ).fetchall()
    assert killed_at < len(fired), "s1 was killed after the catch-up was over"
    # s1 died mid-work: the fires the survivors report are not all there are, so some
    # were committed by s1's tick that never ended (its schedules then went to s2).
    survivors = sum(
        int(n) for s in (s2, s1b) for n in re.findall(r"FireReport\(fired=(\d+)", s.text())
    )
    assert survivors < len(fired), "s1 fired nothing before it was killed"
    for sched in schedules:
        sid = sched["id"]
        # Every whole minute after the schedule's creation up to the boundary: once.
        first = sched["created_at"].replace(second=0, microsecond=0) + timedelta(minutes=1)
        expected = [
            first + timedelta(minutes=m)
            for m in range((boundary - first) // timedelta(minutes=1) + 1)
        ]
        mine = sorted((f for f in fired if f["sid"] == sid), key=lambda f: f["fire_at"])
        assert [f["fire_at"] for f in mine] == expected
        assert not any(f["skipped"] for f in mine)
        # One task per fire, the one the fire row names, keyed by its fire time.
        its_tasks = {t["id"]: t for t in tasks if t["sid"] == sid}
        assert len(its_tasks) == len(expected)
        keys = {f"schedule:{sid}:{int(f['fire_at'].timestamp() * 1000)}" for f in mine}
        assert {t["idempotency_key"] for t in its_tasks.values()} == keys
        assert {f["task_id"] for f in mine} == set(its_tasks)

    scheduled = [t["id"] for t in tasks]
    report = cluster.check("2 schedulers, one kill -9 mid catch-up", scheduled)
    assert report.statuses == {"succeeded": len(scheduled)}
    report.assert_clean()
    assert len(ids) == SCHEDULES
