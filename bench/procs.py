"""Worker processes under test: start in their own session, measure, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence


def start(
    commands: Sequence[Sequence[str]], env: Mapping[str, str], log_path: str, cwd: str | None = None
) -> list[subprocess.Popen[bytes]]:
    """One process per command; output goes to ``log_path`` (kept for post-mortems)."""
    log = open(log_path, "ab")
    full_env = {**os.environ, **env}
    return [
        subprocess.Popen(
            list(cmd),
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )
        for cmd in commands
    ]


def alive(procs: Sequence[subprocess.Popen[bytes]]) -> bool:
    return all(p.poll() is None for p in procs)


def stop(procs: Sequence[subprocess.Popen[bytes]], grace_s: float = 5.0) -> None:
    """SIGTERM each process group, then SIGKILL what is left after ``grace_s``."""
    for p in procs:
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        _signal_group(p, signal.SIGKILL)
        try:
            p.wait(2.0)
        except subprocess.TimeoutExpired:
            pass


def _signal_group(p: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def tree_rss_bytes(procs: Sequence[subprocess.Popen[bytes]]) -> int:
    """Resident memory of the processes and all their descendants (forking workers)."""
    roots = {p.pid for p in procs}
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    members = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in members and pid not in members:
                members.add(pid)
                changed = True
    total = 0
    for pid in members:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total
