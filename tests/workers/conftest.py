"""Worker fixtures: real ``dtq worker`` processes configured through the environment."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chalicelib.core.settings import Settings
from tests.workers.procs import DTQ, worker_env

SpawnWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn_worker(settings: Settings, tmp_path: Path) -> Iterator[SpawnWorker]:
    """Start ``dtq worker`` processes; every one still running is killed afterwards."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        *args: str,
        journal: str = "journal.db",
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"worker-{len(procs)}.log", "wb") as log:
            cmd = [DTQ, "worker", "--offline-db", str(tmp_path / journal), *args]
            proc = subprocess.Popen(
                cmd,
                env={**worker_env(settings, redis_url), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(10)
