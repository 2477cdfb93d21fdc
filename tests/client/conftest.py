"""Connections of the public ``dtq`` API: in the network (the test's own services) and
over HTTP (a real ``dtq api`` process), each with a real worker running the handlers of
``tests/client/tasks_app.py``."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from chalicelib.core import passwords
from chalicelib.core.settings import Settings
from chalicelib.service.deps import Services
from dtq._connection import Connection, HttpConnection, LocalConnection
from tests.helpers import free_port, port_answers, wait_until
from tests.workers.conftest import SpawnWorker, spawn_worker
from tests.workers.procs import DTQ, worker_env

__all__ = ["spawn_worker"]


@pytest.fixture
def api_url(services: Services, settings: Settings) -> Iterator[str]:
    assert settings.admin_password is not None and settings.worker_password is not None
    store = services.store
    store.upsert_user("admin", passwords.hash_password(settings.admin_password, log_n=10), "admin")
    store.upsert_user(
        "worker", passwords.hash_password(settings.worker_password, log_n=10), "worker"
    )
    port = free_port()
    env = {**worker_env(settings), "DTQ_JWT_SECRET": settings.jwt_secret or ""}
    api = subprocess.Popen([DTQ, "api", "--port", str(port)], env=env)
    try:
        wait_until(lambda: port_answers(port), timeout_s=60, what="dtq api")
        yield f"http://127.0.0.1:{port}"
    finally:
        api.terminate()
        api.wait(10)


@pytest.fixture(params=["local", "http"])
def conn(
    request: pytest.FixtureRequest, services: Services, settings: Settings
) -> Iterator[Connection]:
    if request.param == "local":
        yield LocalConnection(services)  # closed with the services
        return
    url = request.getfixturevalue("api_url")
    http = HttpConnection(url, username="admin", password=settings.admin_password)
    yield http
    http.close()


@pytest.fixture
def worker(spawn_worker: SpawnWorker) -> None:
    spawn_worker("--tasks", "tests.client.tasks_app", "--queues", "client,default")
