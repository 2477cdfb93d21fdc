"""Baseline figures of the queue core in one process (no HTTP, no worker threads).

    .venv/bin/python bench/core.py [N]

Measures enqueue_many (Postgres COPY + one Redis pipeline per 1000), single enqueue, and
a claim→complete loop (claims of 100, outcomes pipelined) with and without the recorder
writing every transition to Postgres. Uses DTQ_* settings with a throwaway key prefix.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable

from chalicelib import deps, migrate
from chalicelib.queue import Outcome
from chalicelib.recorder import Recorder
from chalicelib.settings import Settings


def timed(fn: Callable[[], int], runs: int = 3) -> tuple[float, float, float]:
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - start))
    return min(rates), statistics.median(rates), max(rates)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    base = Settings.from_env(os.environ)
    settings = Settings(**{**base.__dict__, "key_prefix": f"bench{uuid.uuid4().hex[:6]}"})
    migrate.ensure_database(settings.database_url)
    migrate.apply_migrations(settings.database_url)
    svc = deps.build(settings)
    c, q = svc.client, svc.queue
    recorder = Recorder(q, svc.store, "bench")

    def enqueue_many() -> int:
        for i in range(0, n, 1000):
            c.enqueue_many([{"name": "dtq.noop"} for _ in range(min(1000, n - i))])
        return n

    def enqueue_one() -> int:
        for _ in range(2000):
            c.enqueue("dtq.noop")
        return 2000

    def drain(record: bool) -> Callable[[], int]:
        def run() -> int:
            done = 0
            while leases := q.claim(["default"], "bench", 100, 30_000).leases:
                q.report_many([Outcome("default", le.task_id, le.lease_token, True) for le in leases])
                done += len(leases)
                if record:
                    recorder.drain_once()
            if record:
                recorder.drain()
            return done
        return run

    print(f"N={n}, 3 runs each: min / median / max tasks/s")
    print("enqueue_many (1000/batch)   %8.0f %8.0f %8.0f" % timed(enqueue_many))
    recorder.drain()
    drain(False)()
    print("enqueue one at a time       %8.0f %8.0f %8.0f" % timed(enqueue_one))
    recorder.drain()
    drain(False)()
    for record in (False, True):
        rates = []
        for _ in range(3):
            enqueue_many()
            recorder.drain()
            start = time.perf_counter()
            done = drain(record)()
            rates.append(done / (time.perf_counter() - start))
        label = "claim→complete + record   " if record else "claim→complete (no record)"
        print(f"{label}  %8.0f %8.0f %8.0f" % (min(rates), statistics.median(rates), max(rates)))
    recorder.drain()
    for key in svc.redis.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
        svc.redis.delete(key)
    svc.close()


if __name__ == "__main__":
    main()
