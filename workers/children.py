"""Child processes of ``dtq dev``: started, logged with a prefix, stopped for sure.

- Each child runs in its own session, so a Ctrl-C on the terminal reaches ``dtq dev``
  alone, which then stops the children in order (the app before the servers it uses)
  instead of everything at once.
- Stopping is a signal, a grace period, then SIGKILL to the child's whole process
  group (PostgreSQL's backends included), so nothing outlives ``dtq dev``.
- The pids of running children are kept in a file, with their kernel start time, so a
  later run can stop what a killed ``dtq dev`` (SIGKILL) left behind without ever
  signalling an unrelated process that reused a pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

#: SGR escapes some children print even into a pipe (werkzeug's, under moto).
_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")
_COLOURS = ("36", "33", "35", "32", "34", "91", "96", "93", "95", "92", "94")


class Output:
    """One line per log line, prefixed by the component's name, coloured on a tty."""

    def __init__(self, stream: IO[str] | None = None, colour: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        if colour is None:
            colour = self.stream.isatty() and "NO_COLOR" not in os.environ
        self.colour = colour
        self.width = 8
        self._colours: dict[str, str] = {}
        # Reentrant: the signal handler may print while the main thread is printing.
        self._lock = threading.RLock()

    def prefix(self, name: str) -> str:
        text = f"{name:>{self.width}} |"
        if not self.colour:
            return text
        code = self._colours.setdefault(name, _COLOURS[len(self._colours) % len(_COLOURS)])
        return f"\x1b[{code}m{text}\x1b[0m"

    def line(self, name: str, text: str) -> None:
        if not self.colour:
            text = _ESCAPES.sub("", text)
        with self._lock:
            self.stream.write(f"{self.prefix(name)} {text}\n")
            self.stream.flush()

    def block(self, name: str, lines: list[str]) -> None:
        with self._lock:
            for text in lines:
                self.stream.write(f"{self.prefix(name)} {text}\n")
            self.stream.flush()


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    #: Stopped in descending tiers: the app (2), then the AWS endpoint (1), then the
    #: data servers (0) it needs to finish cleanly.
    tier: int
    #: Signal asking for a clean stop (PostgreSQL: SIGINT is its "fast" shutdown).
    stop_signal: int = signal.SIGTERM
    grace_s: float = 10.0
    #: Restarted when it dies (workers, scheduler); otherwise its death stops the stack.
    restart: bool = False
    uid: int | None = None
    gid: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    #: When a dead child with ``restart`` is due to be started again.
    restart_at: float | None = None
    stopping: bool = False
    pump: threading.Thread | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (None if gone): with the pid, a stable id."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


class Supervisor:
    def __init__(self, output: Output, pids_file: Path, cwd: Path) -> None:
        self.output = output
        self.pids_file = pids_file
        self.cwd = cwd
        self.children: list[Child] = []
        #: Set on a second Ctrl-C: stop without grace.
        self.hurry = threading.Event()

    def start(self, child: Child) -> Child:
        child.proc = subprocess.Popen(
            child.argv,
            env=child.env,
            cwd="/" if child.uid is not None else self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=child.uid,
            group=child.gid,
            extra_groups=[] if child.uid is not None else None,
        )
        child.started_at = time.monotonic()
        child.stopping = False
        child.pump = threading.Thread(
            target=self._pump, args=(child, child.proc), name=f"log-{child.name}", daemon=True
        )
        child.pump.start()
        if child not in self.children:
            self.children.append(child)
        self._save_pids()
        return child

    def _pump(self, child: Child, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self.output.line(child.name, raw.decode("utf-8", "replace").rstrip())
        proc.stdout.close()

    def restart(self, child: Child) -> None:
        self._kill_group(child)  # whatever the dead one left in its group
        child.restarts += 1
        self.start(child)

    def dead(self) -> list[Child]:
        """Children that exited without being asked to."""
        return [
            c
            for c in self.children
            if c.proc is not None and not c.stopping and c.proc.poll() is not None
        ]

    def stop(self, children: list[Child]) -> None:
        """Ask each to stop, wait up to its grace, then SIGKILL its process group."""
        live = [c for c in children if c.proc is not None]
        asked = time.monotonic()
        for c in live:
            c.stopping = True
            if c.proc is not None and c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(c.pid, c.stop_signal)
        for c in live:
            assert c.proc is not None
            while c.proc.poll() is None and time.monotonic() < asked + c.grace_s:
                if self.hurry.wait(0.05):
                    break
            if c.proc.poll() is None:
                self.output.line("dev", f"{c.name} did not stop within {c.grace_s:g} s: killing it")
            self._kill_group(c)
            if c.pump is not None:
                c.pump.join(timeout=2)
        self._save_pids()

    def _kill_group(self, child: Child) -> None:
        assert child.proc is not None
        # The group can outlive its leader (a crashed postmaster's backends), so the
        # group is swept even when the leader has exited.
        for _ in range(100):
            if child.proc.poll() is not None and not group_members(child.pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            time.sleep(0.02)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=5)

    def stop_all(self) -> None:
        for tier in sorted({c.tier for c in self.children}, reverse=True):
            self.stop([c for c in self.children if c.tier == tier])

    def _save_pids(self) -> None:
        running = [
            {"name": c.name, "pid": c.pid, "start": start_time(c.pid)}
            for c in self.children
            if c.proc is not None and c.proc.poll() is None
        ]
        tmp = self.pids_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(running))
        tmp.replace(self.pids_file)


def stop_leftovers(pids_file: Path, report: Callable[[str], None]) -> None:
    """Stop the children a previous ``dtq dev`` recorded and did not stop (it was
    killed). Only processes whose pid *and* start time match are touched."""
    try:
        entries = json.loads(pids_file.read_text())
    except (OSError, ValueError):
        return
    for entry in reversed(entries):  # started last, stopped first: the app before its servers
        pid, name = int(entry["pid"]), str(entry["name"])
        if entry.get("start") is None or start_time(pid) != entry["start"]:
            continue
        report(f"stopping {name} (pid {pid}) left running by an earlier dtq dev")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT if name == "postgres" else signal.SIGTERM)
        deadline = time.monotonic() + 10
        while start_time(pid) == entry["start"] and time.monotonic() < deadline:
            time.sleep(0.05)
        for member in group_members(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
    pids_file.unlink(missing_ok=True)
