"""Composition root: builds every client and domain object once per process.

Used by ``app.py`` (lazily, once per Lambda container), the ``dtq`` command and the
workers. Tests build their own ``Services`` from explicit ``Settings``.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import redis
from psycopg_pool import ConnectionPool

from chalicelib.core.settings import Settings
from chalicelib.queue.keys import Keys
from chalicelib.queue.scripts import Queue
from chalicelib.record.store import Store, make_pool
from chalicelib.service.epoch import Epochs, ServerWatch
from chalicelib.service.payloads import Payloads
from chalicelib.service.tasks import TaskService


@dataclass
class Services:
    settings: Settings
    redis: Any
    pool: ConnectionPool
    keys: Keys
    queue: Queue
    store: Store
    tasks: TaskService

    def close(self) -> None:
        self.pool.close()
        self.redis.close()


def make_redis(settings: Settings, watch: ServerWatch | None = None) -> Any:
    """A Redis client that fails fast (a request answers 503 instead of hanging);
    ``watch`` sees every new connection first (chalicelib/service/epoch.py)."""
    opts: dict[str, Any] = {
        "socket_timeout": settings.io_timeout_seconds,
        "socket_connect_timeout": settings.io_timeout_seconds,
        "health_check_interval": 30,
    }
    if watch is not None:
        opts["redis_connect_func"] = watch
    if settings.redis_cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(settings.redis_url, **opts)
    return redis.Redis.from_url(settings.redis_url, **opts)


def build(settings: Settings, *, pool_size: int = 10) -> Services:
    watch = ServerWatch(cluster=settings.redis_cluster)
    client_redis = make_redis(settings, watch)
    keys = Keys(settings.key_prefix)
    queue = Queue(client_redis, keys, finished_ttl_ms=settings.finished_ttl_seconds * 1000)
    pool = make_pool(
        settings.database_url, max_size=pool_size, timeout_s=settings.io_timeout_seconds
    )
    store = Store(pool)
    # Before any script runs against a Redis that may have lost writes, the epoch of
    # fences and versions is checked against the record (chalicelib/service/epoch.py).
    Epochs(queue, store).install(watch)
    tasks = TaskService(
        queue, store, max_payload_bytes=settings.max_payload_bytes, payloads=make_payloads(settings)
    )
    return Services(settings, client_redis, pool, keys, queue, store, tasks)


def check_redis(svc: Services) -> None:
    """Startup check of every long-running process: refuse a Redis that may evict keys
    (an evicted task is lost silently). A Redis that is down is not refused: the process
    starts anyway and answers 503 / works offline until it returns."""
    try:
        svc.queue.check_eviction_policy(svc.settings.allow_evicting_redis)
    except redis.ConnectionError as exc:
        log.warning("Redis not reachable at startup (%s); continuing", exc)


def make_payloads(settings: Settings) -> Payloads | None:
    """The S3 offload of large payloads and results, when DTQ_PAYLOAD_BUCKET is set."""
    if settings.payload_bucket is None:
        return None
    from chalicelib.service import aws  # boto3 costs cold-start time; only load it when used

    return Payloads(
        aws.s3(settings), settings.payload_bucket, max_inline_bytes=settings.max_payload_bytes
    )


log = logging.getLogger("dtq")

_services: Services | None = None
_lock = threading.Lock()


def services() -> Services:
    """The process-wide services, built from the environment on first use."""
    global _services
    if _services is None:
        with _lock:
            if _services is None:
                _services = build(Settings.from_env(os.environ))
    return _services
