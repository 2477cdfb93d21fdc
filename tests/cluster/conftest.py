"""In tests/cluster, ``services`` is the test's Services on the three-node Redis Cluster
(tests/cluster/fixtures.py), so every fixture built on it, the HTTP API's included, runs
against the cluster."""

from __future__ import annotations

import pytest

from chalicelib.service.deps import Services

# The HTTP API fixtures (the app served from the test's own services, tokens).
from tests.api.conftest import admin, admin_token, anon, api, client, worker, worker_token  # noqa: F401


@pytest.fixture
def services(cluster: Services) -> Services:
    return cluster
