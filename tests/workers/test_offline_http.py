"""Offline-first in HTTP mode: a worker talking to `dtq api` through a TCP proxy the test
cuts finishes what it holds, journals the outcomes, and syncs them through /tasks/sync
when the network returns — also across a kill -9 and a restart with the same journal."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.core import passwords
from chalicelib.core.settings import Settings
from chalicelib.service.deps import Services
from tests.helpers import free_port, port_answers, wait_until
from tests.workers.conftest import SpawnWorker
from tests.workers.procs import DTQ, Proxy, worker_env
from tests.workers.test_offline import (
    MARKED,
    assert_each_ran_once,
    enqueue_marked,
    held_by_the_worker,
    journaled,
    states,
)


@pytest.fixture
def api_port(services: Services, settings: Settings, tmp_path: Path) -> Iterator[int]:
    assert settings.worker_password is not None
    services.store.upsert_user(
        settings.worker_username,
        passwords.hash_password(settings.worker_password, log_n=10),
        "worker",
    )
    port = free_port()
    env = {**worker_env(settings), "DTQ_JWT_SECRET": settings.jwt_secret or ""}
    with open(tmp_path / "api.log", "wb") as log:
        api = subprocess.Popen(
            [DTQ, "api", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: port_answers(port), timeout_s=60, what="dtq api")
        yield port
    finally:
        api.terminate()
        api.wait(10)


@pytest.fixture
def api_proxy(api_port: int) -> Iterator[Proxy]:
    p = Proxy("127.0.0.1", api_port)
    yield p
    p.close()


def _spawn(
    spawn_worker: SpawnWorker, settings: Settings, proxy: Proxy, *args: str
) -> subprocess.Popen[bytes]:
    env = {"DTQ_WORKER_PASSWORD": settings.worker_password or ""}
    return spawn_worker("--api", f"http://127.0.0.1:{proxy.port}", *MARKED, *args, env=env)


def test_http_worker_offline_finishes_held_tasks_and_syncs_on_reconnect(
    services: Services,
    settings: Settings,
    api_proxy: Proxy,
    spawn_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    ids = enqueue_marked(services, tmp_path)
    _spawn(spawn_worker, settings, api_proxy, "--concurrency", "4", "--prefetch", "0")
    wait_until(lambda: held_by_the_worker(tmp_path), timeout_s=20)
    api_proxy.cut()
    wait_until(lambda: journaled(tmp_path) == 4, timeout_s=10, what="4 journaled outcomes")
    assert states(services, ids) == ["running"] * 4  # nothing reached the server
    api_proxy.restore()
    wait_until(lambda: states(services, ids) == ["succeeded"] * 4, timeout_s=30)
    wait_until(lambda: journaled(tmp_path) == 0, timeout_s=5)
    assert_each_ran_once(services, ids)


def test_http_worker_killed_while_offline_syncs_after_restart_without_rerunning(
    services: Services,
    settings: Settings,
    api_proxy: Proxy,
    spawn_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    ids = enqueue_marked(services, tmp_path)
    worker = _spawn(spawn_worker, settings, api_proxy, "--concurrency", "4", "--prefetch", "0")
    wait_until(lambda: held_by_the_worker(tmp_path), timeout_s=20)
    api_proxy.cut()
    wait_until(lambda: journaled(tmp_path) == 4, timeout_s=10, what="4 journaled outcomes")
    worker.kill()
    worker.wait(10)
    api_proxy.restore()
    assert states(services, ids) == ["running"] * 4
    _spawn(spawn_worker, settings, api_proxy, "--concurrency", "4")  # the same journal
    wait_until(lambda: states(services, ids) == ["succeeded"] * 4, timeout_s=30)
    wait_until(lambda: journaled(tmp_path) == 0, timeout_s=5)
    assert_each_ran_once(services, ids)
