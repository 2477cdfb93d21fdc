"""The parts of ``dtq dev`` that need no server: credentials, output, leftovers."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
from pathlib import Path

from tests.helpers import wait_until
from workers.children import Output, describe_exit, start_time, stop_leftovers
from workers.devstack.embedded import has_data
from workers.devstack.stack import load_credentials


def test_credentials_are_generated_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    first = load_credentials(path)
    assert set(first) == {"DTQ_ADMIN_PASSWORD", "DTQ_WORKER_PASSWORD", "DTQ_JWT_SECRET"}
    assert len(first["DTQ_JWT_SECRET"].encode()) >= 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_credentials(path) == first
    # A value the developer wrote is kept; only what is missing is generated.
    path.write_text("DTQ_ADMIN_PASSWORD=chosen-by-me\n")
    again = load_credentials(path)
    assert again["DTQ_ADMIN_PASSWORD"] == "chosen-by-me"
    assert again["DTQ_WORKER_PASSWORD"] != first["DTQ_WORKER_PASSWORD"]
    assert load_credentials(path) == again


def test_output_prefixes_each_line_and_colours_only_when_asked() -> None:
    plain = io.StringIO()
    out = Output(plain, colour=False)
    out.width = 9
    out.line("aws", "\x1b[31mWARNING\x1b[0m dev server")
    out.block("dev", ["one", "two"])
    assert plain.getvalue().splitlines() == [
        "      aws | WARNING dev server",
        "      dev | one",
        "      dev | two",
    ]
    coloured = io.StringIO()
    Output(coloured, colour=True).line("api", "up")
    assert coloured.getvalue() == "\x1b[36m     api |\x1b[0m up\n"


def test_exit_descriptions() -> None:
    assert describe_exit(0) == "exit status 0"
    assert describe_exit(3) == "exit status 3"
    assert describe_exit(-9) == "killed by SIGKILL"


def test_embedded_data_is_recognised(tmp_path: Path) -> None:
    assert not has_data(tmp_path, "redis") and not has_data(tmp_path, "postgres")
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "appendonlydir").mkdir()
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres" / "PG_VERSION").write_text("18\n")
    assert has_data(tmp_path, "redis") and has_data(tmp_path, "postgres")


def test_leftovers_are_stopped_only_when_pid_and_start_time_match(tmp_path: Path) -> None:
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        pids = tmp_path / "dev.pids"
        entries = [
            {"name": "worker-1", "pid": orphan.pid, "start": start_time(orphan.pid)},
            # Our own pid with another start time: a reused pid, never to be touched.
            {"name": "api", "pid": os.getpid(), "start": "1"},
        ]
        pids.write_text(json.dumps(entries))
        said: list[str] = []
        stop_leftovers(pids, said.append)
        wait_until(lambda: orphan.poll() is not None, 10, "the orphan to stop")
        assert orphan.returncode == -signal.SIGTERM
        assert said == [f"stopping worker-1 (pid {orphan.pid}) left running by an earlier dtq dev"]
        assert not pids.exists()
    finally:
        orphan.kill()
        orphan.wait()
