"""Fixtures of the tests under Redis Cluster (``DTQ_REDIS_CLUSTER=true``), shared by every
test directory (``pytest_plugins`` in tests/conftest.py).

One three-node cluster of local ``redis-server`` processes per pytest session
(bench/redis_server.py's :class:`LocalCluster`, which the bench's ``cluster`` scenario
uses too), started only when a test asks for it. Each test gets its own key prefix and
a fresh record through the ``settings`` fixture, as on a single Redis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster

from bench.redis_server import LocalCluster
from chalicelib.core.settings import Settings
from chalicelib.service import deps
from chalicelib.service.deps import Services

#: Queues in different slots, spread over the three nodes (node 0: alpha, gamma; node 1:
#: delta; node 2: beta); tests/cluster/test_keys.py checks that they still are.
QUEUES = ["alpha", "beta", "gamma", "delta"]


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """The session's three-node Redis Cluster."""
    cluster = LocalCluster(3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def cluster_url(redis_cluster: LocalCluster) -> str:
    return redis_cluster.url


@pytest.fixture
def cluster_settings(settings: Settings, cluster_url: str) -> Settings:
    """The test's settings (own key prefix, fresh record) on the cluster."""
    return dataclasses.replace(settings, redis_url=cluster_url, redis_cluster=True)


@pytest.fixture
def cluster(cluster_settings: Settings) -> Iterator[Services]:
    """Services on the cluster; the test's keys are deleted from every node afterwards."""
    svc = deps.build(cluster_settings, pool_size=8)
    assert isinstance(svc.redis, RedisCluster)
    slots = {svc.redis.keyslot(svc.keys.queue(q).ready) for q in QUEUES}
    assert len(slots) == len(QUEUES)  # the queues really are in different slots
    yield svc
    for key in svc.redis.scan_iter(match=f"{cluster_settings.key_prefix}:*", count=1000):
        svc.redis.delete(key)
    svc.close()
