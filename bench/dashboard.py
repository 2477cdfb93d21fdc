"""The dashboard's API calls with 1,000,000 recorded tasks, timed in-process.

    .venv/bin/python -m bench.dashboard [--tasks 1000000] [--calls 50] [--json PATH]

Starts a private ``redis-server`` and creates a throwaway PostgreSQL database
(``dtq_bench_dash_<pid>`` on ``DTQ_DATABASE_URL``'s server, dropped at the end), fills
``dtq_tasks`` with N rows in one ``INSERT … SELECT generate_series`` (8 queues, 20 task
names, every status, creation times spread over 30 days, succeeded rows with a result,
dead ones with an error), ANALYZEs, and gives Redis what a live deployment has: 8
registered queues with some live tasks, an hour of timeline minutes for each queue and
12 workers heartbeating. Then it times, through app.py's routes (Chalice's test client,
so routing, auth, validation and JSON encoding are counted; the network is not), the
calls the overview makes (``GET /queues``, ``/health``, ``/workers``,
``/stats/timeline?minutes=60``) and first pages of ``GET /tasks`` (unfiltered, by
queue, by status, by a one-hour creation window, and a second page by cursor): each
call once to warm up, then ``--calls`` times, reporting p50, p95 and max in ms.
The plan of each ``GET /tasks`` query is printed (EXPLAIN ANALYZE), so a figure can be
read against what PostgreSQL did.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench.redis_server import RedisServer  # noqa: E402
from bench.run import drop_database, fresh_database  # noqa: E402
from chalicelib.core import passwords  # noqa: E402
from chalicelib.core.settings import Settings  # noqa: E402
from chalicelib.record import migrate  # noqa: E402
from chalicelib.record.sql import q  # noqa: E402
from chalicelib.service.fleet import Fleet  # noqa: E402

QUEUES = [f"q{i}" for i in range(8)]
PASSWORD = "bench-admin-password"

FILL = """
INSERT INTO dtq_tasks (id, name, queue, priority, payload, status, attempts, max_attempts,
    timeout_seconds, backoff, run_at, created_at, started_at, finished_at, result, error,
    version)
SELECT
    -- A UUIDv7-shaped id that grows with created_at (as the API's ids do).
    (lpad(to_hex((extract(epoch FROM t.created) * 1000)::bigint), 12, '0')
        || '7' || lpad(to_hex(i %% 4096), 3, '0') || '8'
        || lpad(to_hex(i), 15, '0'))::uuid,
    'reports.task' || (i %% 20),
    'q' || (i %% 8),
    i %% 10,
    jsonb_build_object('n', i, 'customer', 'c' || (i %% 1000)),
    t.status,
    CASE WHEN t.status IN ('queued', 'scheduled') THEN 0 ELSE 1 END,
    3, 300, '{"base_seconds": 1, "factor": 2, "max_seconds": 3600, "jitter": true}',
    t.created, t.created,
    CASE WHEN t.status IN ('queued', 'scheduled') THEN NULL ELSE t.created + interval '20 ms' END,
    CASE WHEN t.status IN ('succeeded', 'dead', 'canceled')
         THEN t.created + interval '120 ms' END,
    CASE WHEN t.status = 'succeeded' THEN jsonb_build_object('rows', i %% 97) END,
    CASE WHEN t.status = 'dead'
         THEN E'ValueError: bad row\\nTraceback (most recent call last): …' END,
    3
FROM generate_series(1, %(n)s) AS i,
LATERAL (SELECT
    %(now)s::timestamptz - (%(n)s - i) * (interval '30 days' / %(n)s) AS created,
    CASE WHEN i %% 1000 = 0 THEN 'dead'
         WHEN i %% 997 = 0 THEN 'canceled'
         WHEN i %% 211 = 0 THEN 'retrying'
         WHEN i > %(n)s - 2000 AND i %% 2 = 0 THEN 'queued'
         WHEN i > %(n)s - 2000 AND i %% 7 = 0 THEN 'running'
         ELSE 'succeeded' END AS status) AS t
"""


def fill_postgres(url: str, n: int) -> float:
    start = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FILL, {"n": n, "now": datetime.now(UTC)})
        conn.execute("VACUUM ANALYZE dtq_tasks")
    return time.perf_counter() - start


def fill_redis(svc: Any) -> None:
    """Live tasks in each queue, an hour of timeline, a fleet of workers."""
    svc.tasks.enqueue_many(
        [{"name": "reports.task1", "queue": q} for q in QUEUES for _ in range(50)]
    )
    now_min = svc.queue.clock.now_ms() // 60_000
    pipe = svc.redis.pipeline(transaction=False)
    for queue in QUEUES:
        for m in range(now_min - 59, now_min + 1):
            key = svc.keys.queue(queue).timeline(m)
            pipe.hset(
                key, mapping={"enq": 900, "ok": 880, "fail": 12, "w3": 400, "w20": 450, "w40": 50}
            )
            pipe.pexpire(key, 3_600_000)
    pipe.execute()
    fleet = Fleet(svc.queue, svc.store)
    for i in range(12):
        fleet.heartbeat(
            f"worker-{i}",
            queues=QUEUES[i % 8 : i % 8 + 2],
            hostname=f"host{i}",
            concurrency=16,
            mode="redis",
        )


def explain(url: str, params: dict[str, Any]) -> str:
    base = {
        "status": None,
        "queue": None,
        "name": None,
        "limit": 51,
        "after_created": None,
        "after_id": None,
        "created_from": None,
        "created_until": None,
    }
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + q("list_tasks"), {**base, **params}
        ).fetchall()
    return "\n".join("    " + r[0] for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--json", default="")
    args = parser.parse_args()

    from chalice.test import Client

    import app as app_module
    from chalicelib.api import web
    from chalicelib.service import deps

    base = Settings.from_env(os.environ)
    redis = RedisServer()
    db_url = fresh_database(base.database_url, prefix="dtq_bench_dash_")
    svc = None
    try:
        migrate.ensure_database(db_url)
        migrate.apply_migrations(db_url)
        filled_s = fill_postgres(db_url, args.tasks)
        print(f"filled {args.tasks:,} task rows in {filled_s:.1f} s", flush=True)
        settings = dataclasses.replace(
            base,
            redis_url=redis.url(0),
            database_url=db_url,
            key_prefix="benchdash",
            jwt_secret=base.jwt_secret or "bench-dashboard-secret-0123456789abcdef",
        )
        svc = deps.build(settings)
        svc.store.upsert_user("admin", passwords.hash_password(PASSWORD, log_n=10), "admin")
        fill_redis(svc)
        web.use(svc)
        with Client(app_module.app) as client:
            login = client.http.post(
                "/auth/login",
                headers={"Content-Type": "application/json"},
                body=json.dumps({"username": "admin", "password": PASSWORD}),
            )
            token = login.json_body["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            first = client.http.get("/tasks?limit=50", headers=headers).json_body
            hour_ago = (datetime.now(UTC) - timedelta(days=3)).isoformat()
            hour_end = (datetime.now(UTC) - timedelta(days=3) + timedelta(hours=1)).isoformat()
            calls = {
                "GET /queues": "/queues",
                "GET /health": "/health",
                "GET /workers": "/workers",
                "GET /stats/timeline?minutes=60": "/stats/timeline?minutes=60",
                "GET /tasks?limit=50": "/tasks?limit=50",
                "GET /tasks?queue=q3&limit=50": "/tasks?queue=q3&limit=50",
                "GET /tasks?status=dead&limit=50": "/tasks?status=dead&limit=50",
                "GET /tasks?created_after=…&created_before=… (1 h, 3 days ago)": (
                    f"/tasks?created_after={quote(hour_ago)}&created_before={quote(hour_end)}"
                    "&limit=50"
                ),
                "GET /tasks?limit=50&cursor=… (page 2)": (
                    f"/tasks?limit=50&cursor={first['next_cursor']}"
                ),
            }
            results: dict[str, dict[str, float]] = {}
            for label, path in calls.items():
                reply = client.http.get(path, headers=headers)
                assert reply.status_code == 200, (path, reply.status_code, reply.body[:300])
                times = []
                for _ in range(args.calls):
                    start = time.perf_counter()
                    client.http.get(path, headers=headers)
                    times.append((time.perf_counter() - start) * 1000)
                times.sort()
                results[label] = {
                    "p50_ms": round(statistics.median(times), 2),
                    "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
                    "max_ms": round(times[-1], 2),
                }
        web.use(None)
        print(f"\n{args.tasks:,} recorded tasks, {args.calls} calls each, in-process (ms):")
        print(f"{'call':66} {'p50':>8} {'p95':>8} {'max':>8}")
        for label, r in results.items():
            print(f"{label:66} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['max_ms']:8.2f}")
        print("\nplans:")
        day = datetime.now(UTC) - timedelta(days=3)
        for label, params in [
            ("first page", {}),
            ("status=dead", {"status": "dead"}),
            ("one hour", {"created_from": day, "created_until": day + timedelta(hours=1)}),
        ]:
            print(f"  {label}:\n{explain(db_url, params)}")
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(
                    {"tasks": args.tasks, "calls": args.calls, "results": results}, f, indent=2
                )
        return 0
    finally:
        if svc is not None:
            svc.close()
        redis.stop()
        drop_database(db_url)


if __name__ == "__main__":
    sys.exit(main())
