"""Worker processes under test: start in their own session, measure, stop."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence


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


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    return parents


def descendants(roots: Iterable[int], parents: Mapping[int, int] | None = None) -> set[int]:
    """The processes below ``roots`` (children, grandchildren…), not the roots."""
    parents = _parents() if parents is None else parents
    members = set(roots)
    found: set[int] = set()
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in members and pid not in members:
                members.add(pid)
                found.add(pid)
                changed = True
    return found


def tree_rss_bytes(procs: Sequence[subprocess.Popen[bytes]]) -> int:
    """Resident memory of the processes and all their descendants (forking workers)."""
    roots = {p.pid for p in procs}
    total = 0
    for pid in roots | descendants(roots):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def pids_named(comm: str) -> list[int]:
    """Processes whose kernel name (``/proc/<pid>/comm``) is ``comm``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == comm:
                        found.append(int(entry))
            except OSError:
                continue
    return found


_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime + stime


class CpuSampler:
    """CPU seconds used by groups of processes, sampled over time, so that the CPU spent
    between two instants known only afterwards (the first and the last task's start)
    can be read by linear interpolation; start-up and shut-down are left out.

    ``groups()`` names the processes of each group; it is asked again every
    ``resolve_s`` (children appear after start). A process that exits keeps its last
    reading, so a group's total never goes down."""

    def __init__(
        self, groups: Callable[[], Mapping[str, Iterable[int]]], resolve_s: float = 0.25
    ) -> None:
        self._groups = groups
        self._resolve_s = resolve_s
        self._resolved_at = -1e9
        self._members: dict[str, set[int]] = {}
        self._last: dict[int, float] = {}
        self.samples: list[tuple[int, dict[str, float]]] = []

    def sample(self) -> None:
        now = time.monotonic()
        if now - self._resolved_at >= self._resolve_s:
            self._resolved_at = now
            for name, pids in self._groups().items():
                self._members.setdefault(name, set()).update(pids)
        at = time.time_ns()  # the stamps' clock
        totals: dict[str, float] = {}
        for name, pids in self._members.items():
            for pid in pids:
                cpu = _cpu_s(pid)
                if cpu is not None:
                    self._last[pid] = cpu
            totals[name] = sum(self._last.get(pid, 0.0) for pid in pids)
        self.samples.append((at, totals))

    def between(self, t0_ns: int, t1_ns: int) -> dict[str, float]:
        """CPU seconds per group from ``t0_ns`` to ``t1_ns`` (``time.time_ns()``)."""
        return {name: self._at(t1_ns, name) - self._at(t0_ns, name) for name in self._members}

    def _at(self, t_ns: int, name: str) -> float:
        points = [(at, totals.get(name, 0.0)) for at, totals in self.samples]
        if not points:
            return 0.0
        if t_ns <= points[0][0]:
            return points[0][1]
        for (a0, v0), (a1, v1) in itertools.pairwise(points):
            if a0 <= t_ns <= a1:
                return v0 + (v1 - v0) * (t_ns - a0) / max(1, a1 - a0)
        return points[-1][1]
