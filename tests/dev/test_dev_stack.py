"""``dtq dev`` as a real process: embedded Redis and PostgreSQL on free ports, a task
enqueued over HTTP and run by a worker, a schedule that fires, Ctrl-C leaving no process
behind, a second start that finds the history and the still-queued task; a dead worker
restarted; what a killed ``dtq dev`` left stopped by the next run."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import http_json, processes, wait_until
from workers.children import start_time, stop_leftovers
from workers.devstack.embedded import free_port

DTQ = str(Path(sys.executable).with_name("dtq"))


def call(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    return http_json(method, url, body, token, timeout_s=5)


class Dev:
    """One ``dtq dev --embedded`` run; its output goes to a log shown on failure."""

    def __init__(self, state: Path, port: int, *extra: str) -> None:
        self.state, self.port = state, port
        self.url = f"http://127.0.0.1:{port}"
        # One log per run: a later run must not be judged by an earlier one's output.
        self.log = tempfile.NamedTemporaryFile(
            prefix="dev-", suffix=".log", dir=state.parent, delete=False
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DTQ_", "AWS_"))}
        argv = [
            DTQ,
            "dev",
            "--embedded",
            "--port",
            str(port),
            "--workers",
            "1",
            "--state-dir",
            str(state),
            *extra,
        ]
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.tree: dict[int, str | None] = {}

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def healthy(self) -> bool:
        assert self.proc.poll() is None, f"dtq dev exited early:\n{self.output()[-4000:]}"
        status, body = call("GET", self.url + "/health")
        return status == 200 and body["status"] == "ok"

    def up(self) -> None:
        wait_until(self.healthy, 60, "dtq dev to serve /health")
        # The summary block comes once the workers have registered.
        wait_until(lambda: "DTQ is up" in self.output(), 30, "the summary")

    def descendants(self) -> dict[int, str | None]:
        procs = processes()
        tree, frontier = {}, [self.proc.pid]
        while frontier:
            parent = frontier.pop()
            for pid, (ppid, _, started) in procs.items():
                if ppid == parent and pid not in tree:
                    tree[pid] = started
                    frontier.append(pid)
        return tree

    def interrupt(self) -> int:
        self.tree = self.descendants()
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=45)
        self.log.close()
        return code

    def leftovers(self) -> list[str]:
        """Processes of this run still alive: descendants seen before the stop (same pid
        and start time), or anything naming the state directory."""
        return [
            f"{pid}: {cmd}"
            for pid, (_, cmd, started) in processes().items()
            if self.tree.get(pid, "-") == started or str(self.state) in cmd
        ]

    def assert_nothing_left(self) -> None:
        # A process may be in its exit path as dtq dev returns; it must be gone promptly.
        try:
            wait_until(lambda: not self.leftovers(), 3, "the run's processes to be gone")
        except AssertionError:
            raise AssertionError(f"left behind: {self.leftovers()}") from None

    def kill(self) -> None:
        """After a failure: leave nothing running, whatever state the run is in."""
        if self.proc.poll() is None:
            tree = self.descendants()
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                for pid, started in tree.items():
                    if start_time(pid) == started:
                        os.kill(pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture
def state() -> Iterator[Path]:
    # Not tmp_path: under root, the PostgreSQL user must be able to reach the directory,
    # and pytest's base directory is private to root.
    base = Path(tempfile.mkdtemp(prefix="dtq-dev-test-"))
    yield base / "state"
    # Whatever a failed test left running (each Dev stops its own run already).
    stop_leftovers(base / "state" / "dev.pids", print)
    shutil.rmtree(base, ignore_errors=True)


def login(url: str, state: Path) -> str:
    creds = dict(
        line.split("=", 1)
        for line in (state / "credentials").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    status, body = call(
        "POST", url + "/auth/login", {"username": "admin", "password": creds["DTQ_ADMIN_PASSWORD"]}
    )
    assert status == 200, body
    return str(body["access_token"])


def create_schedule(dev: Dev, token: str) -> str | None:
    """A schedule firing every minute; None (and the summary says so) when this
    checkout has no scheduler yet."""
    if importlib.util.find_spec("schedules.runner") is None:
        assert "scheduler  not started" in dev.output()
        return None
    body = {"name": "dev-every-minute", "cron": "* * * * *", "task": {"name": "dtq.noop"}}
    status, schedule = call("POST", dev.url + "/schedules", body, token)
    assert status == 201, schedule
    return str(schedule["id"])


def schedule_ran(dev: Dev, token: str, schedule_id: str) -> bool:
    status, schedule = call("GET", f"{dev.url}/schedules/{schedule_id}", token=token)
    assert status == 200, schedule
    return any(run["status"] == "succeeded" for run in schedule["last_runs"])


@pytest.mark.timeout(150)
def test_dev_runs_a_task_stops_cleanly_and_keeps_the_queue(state: Path) -> None:
    started = time.monotonic()
    port = free_port()
    dev = Dev(state, port)
    try:
        dev.up()
        assert (state / "credentials").stat().st_mode & 0o777 == 0o600
        token = login(dev.url, state)
        # First, so that its minute comes as early as possible: fires are per minute.
        schedule = create_schedule(dev, token)
        status, done = call(
            "POST", dev.url + "/tasks", {"name": "dtq.echo", "payload": {"n": 1}}, token
        )
        assert status == 201, done
        status, later = call(
            "POST",
            dev.url + "/tasks",
            {"name": "dtq.echo", "payload": {"n": 2}, "delay_seconds": 86400},
            token,
        )
        assert status == 201, later
        wait_until(
            lambda: (
                call("GET", f"{dev.url}/tasks/{done['id']}", token=token)[1]["status"]
                == "succeeded"
            ),
            30,
            "the task to succeed",
        )
        assert dev.interrupt() == 0, dev.output()[-4000:]
        dev.assert_nothing_left()
        assert "stopped" in dev.output().splitlines()[-1]
    finally:
        dev.kill()

    dev = Dev(state, port)
    try:
        dev.up()
        token = login(dev.url, state)  # the same generated password
        status, task = call("GET", f"{dev.url}/tasks/{done['id']}", token=token)
        assert status == 200 and task["status"] == "succeeded" and task["result"] == {"n": 1}
        assert "succeeded" in [e["event"] for e in task["history"]]
        status, task = call("GET", f"{dev.url}/tasks/{later['id']}", token=token)
        assert status == 200 and task["status"] == "scheduled"
        # Still in the embedded Redis (its AOF), not only in the record.
        status, queue = call("GET", f"{dev.url}/queues/default", token=token)
        assert queue["depth"]["scheduled"] == 1, queue
        if schedule is not None:
            wait_until(lambda: schedule_ran(dev, token, schedule), 75, "the schedule to fire")
        assert dev.interrupt() == 0, dev.output()[-4000:]
        dev.assert_nothing_left()
    finally:
        dev.kill()
    # Typically 35-75 s, up to 60 s of it waiting for the schedule's minute.
    assert time.monotonic() - started < 110


def test_a_dead_worker_is_restarted_and_the_next_run_stops_what_a_killed_one_left(
    state: Path,
) -> None:
    dev = Dev(state, free_port(), "--no-aws")
    try:
        dev.up()

        def worker_pids() -> list[int]:
            return [
                pid
                for pid, (ppid, cmd, _) in processes().items()
                if ppid == dev.proc.pid and "journal-worker-1" in cmd
            ]

        [first] = worker_pids()
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: worker_pids() not in ([], [first]), 20, "worker-1 to be restarted")
        assert "worker-1 stopped unexpectedly (killed by SIGKILL); restarting it" in dev.output()

        # SIGKILL gives dtq dev no chance to stop its children: they stay up...
        orphans = dev.descendants()
        dev.proc.kill()
        dev.proc.wait(timeout=10)
        assert any(start_time(pid) == started for pid, started in orphans.items())
    finally:
        dev.kill()
    # ... until the next run on the same state directory stops them first.
    dev = Dev(state, dev.port, "--no-aws")
    try:
        dev.up()
        assert "left running by an earlier dtq dev" in dev.output()
        assert [pid for pid, started in orphans.items() if start_time(pid) == started] == []
        assert dev.interrupt() == 0, dev.output()[-4000:]
        dev.assert_nothing_left()
    finally:
        dev.kill()


def test_a_configured_server_that_does_not_answer_is_a_one_line_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTQ_")}
    env["DTQ_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        [DTQ, "dev", "--state-dir", str(tmp_path / "s")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "dtq: DTQ_REDIS_URL: nothing answers there (unset it, or pass --embedded, to run an "
        "embedded server)"
    ]
