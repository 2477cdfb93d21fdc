"""HTTP request counts and latencies per route, for the whole cluster.

Each API process adds its figures up in memory and a background thread folds them into
one Redis hash every ``interval_s`` (one pipelined round trip), so a request never waits
for the metrics and ``/metrics`` on any instance shows every instance's traffic. A
failed flush keeps the figures for the next one.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import redis

log = logging.getLogger("dtq.httpstats")

#: Request latency buckets (seconds).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _bucket(seconds: float) -> int:
    for i, bound in enumerate(BUCKETS, start=1):
        if seconds <= bound:
            return i
    return len(BUCKETS) + 1


class HttpStats:
    def __init__(self, client: Any, key: str, interval_s: float = 1.0) -> None:
        self.redis = client
        self.key = key
        self.interval_s = interval_s
        self._counts: Counter[str] = Counter()
        self._sums: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        base = f"{method}|{route}"
        with self._lock:
            self._counts[f"n|{base}|{status}"] += 1
            self._counts[f"d|{base}|b{_bucket(seconds)}"] += 1
            self._counts[f"d|{base}|count"] += 1
            key = f"d|{base}|sum"
            self._sums[key] = self._sums.get(key, 0.0) + seconds
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dtq-httpstats", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        with self._lock:
            counts, sums = self._counts, self._sums
            self._counts, self._sums = Counter(), {}
        if not counts and not sums:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for field, n in counts.items():
                pipe.hincrby(self.key, field, n)
            for field, total in sums.items():
                pipe.hincrbyfloat(self.key, field, total)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("http metrics not flushed (kept for the next try): %s", exc)
            with self._lock:
                self._counts.update(counts)
                for key, total in sums.items():
                    self._sums[key] = self._sums.get(key, 0.0) + total

    def read(self) -> dict[str, float]:
        """Every field of the cluster-wide hash (after flushing this process's share)."""
        self.flush()
        raw = self.redis.hgetall(self.key)
        return {k.decode(): float(v) for k, v in raw.items()}

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
