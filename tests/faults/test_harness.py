"""The harness itself: what the scenarios rely on when they start and hurt processes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from tests.faults.cluster import Proc, RedisServer, start_on_free_port
from tests.helpers import alive
from workers.devstack import embedded


def test_a_server_that_loses_its_port_to_another_process_starts_on_another(
    tmp_path: Path,
) -> None:
    taken = socket.create_server(("127.0.0.1", 0))  # the other process that won the race
    try:
        exe, _ = embedded.find_redis_server()
        proc = Proc(
            "redis", [], tmp_path / "redis.log", env=dict(os.environ), cwd=tmp_path, start=False
        )
        ports: list[int] = []

        def place(port: int) -> None:  # the first pick is the port already taken
            ports.append(taken.getsockname()[1] if not ports else port)
            proc.argv = [exe, "--port", str(ports[-1]), "--save", "", "--appendonly", "no"]

        try:
            start_on_free_port(
                proc, place, lambda: embedded.redis_answers(f"redis://127.0.0.1:{ports[-1]}"), 20.0
            )
            assert len(ports) == 2 and proc.alive()
            assert "Address already in use" in proc.text()  # the first start lost the race
        finally:
            proc.cleanup()
    finally:
        taken.close()


def test_kill_pause_and_restart_of_a_server(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path, tmp_path)
    try:
        with redis.client() as r:
            r.set("k", "v")
        redis.proc.pause()
        assert redis.proc.paused and alive(redis.proc.pid)
        redis.proc.resume()
        pid = redis.proc.pid
        redis.kill()
        assert not alive(pid)
        redis.restart()  # same port, same AOF
        with redis.client() as r:
            assert r.get("k") == b"v"
    finally:
        redis.proc.cleanup()
    assert not redis.proc.alive()
