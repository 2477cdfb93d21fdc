"""``GET /health``: a real round trip to Redis and to PostgreSQL, each bounded in time.

Both checks run at once, so a dead dependency costs one timeout, not two, and the answer
stays well under the 2 s that load balancers and the spec allow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chalicelib.api.http import Reply
from chalicelib.api.web import Web

log = logging.getLogger("dtq.health")

#: Longest a PostgreSQL check waits for a pooled connection.
PG_TIMEOUT_S = 0.8

_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dtq-health")


def _timed(check: Callable[[], object]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        check()
    except Exception as exc:  # any failure of a dependency is "down", never a 500
        log.warning("health check failed: %r", exc)
        return {"status": "down", "latency_ms": _ms(start), "error": "unreachable"}
    return {"status": "ok", "latency_ms": _ms(start)}


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def health(web: Web) -> Reply:
    svc = web.services

    def postgres() -> None:
        timeout = min(PG_TIMEOUT_S, web.settings.io_timeout_seconds)
        if svc.pool.closed:
            svc.pool.open(wait=False)
        with svc.pool.connection(timeout=timeout) as conn:
            conn.execute("SELECT 1").fetchone()

    futures = {
        "redis": _executor.submit(_timed, svc.queue.ping),
        "postgres": _executor.submit(_timed, postgres),
    }
    checks = {name: f.result() for name, f in futures.items()}
    ok = all(c["status"] == "ok" for c in checks.values())
    return Reply({"status": "ok" if ok else "degraded", "checks": checks}, 200 if ok else 503)
