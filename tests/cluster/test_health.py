"""GET /health on a Redis Cluster asks every primary: a queue's keys may live on any node,
so the answer of the one node a client happens to talk to first says little."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Iterator

import pytest
from chalice.test import Client

import app as app_module
from bench.redis_server import LocalCluster
from chalicelib.api import web
from chalicelib.core.settings import Settings
from chalicelib.service import deps


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of this test's own: it loses a node."""
    cluster = LocalCluster(3)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_health_fails_when_any_primary_is_down(
    settings: Settings, own_cluster: LocalCluster
) -> None:
    svc = deps.build(
        dataclasses.replace(settings, redis_url=own_cluster.url, redis_cluster=True), pool_size=2
    )
    web.use(svc)
    try:
        with Client(app_module.app) as client:
            ok = client.http.get("/health")
            assert ok.status_code == 200, ok.body
            default_port = svc.redis.get_default_node().port
            victim = next(i for i, p in enumerate(own_cluster.ports) if p != default_port)
            own_cluster.procs[victim].send_signal(signal.SIGKILL)
            own_cluster.procs[victim].wait(10)
            down = client.http.get("/health")
            assert down.status_code == 503, down.body
            assert down.json_body["checks"]["redis"]["status"] != "ok"
            assert down.json_body["checks"]["postgres"]["status"] == "ok"
    finally:
        web.use(None)
        svc.close()
