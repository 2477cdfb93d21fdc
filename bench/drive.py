"""Scenario procedures shared by DTQ and every peer (standard library only).

A :class:`System` is a queue under test seen from outside: it enqueues no-op and stamp
tasks and names the commands that start its worker processes. The procedures here are
the same for every system, so a DTQ/peer ratio compares like with like:

- **drain**: enqueue a stamp, N-2 no-ops and a stamp, start the workers; the rate is
  (N-1) over the time between the two stamps' starts, so worker start-up is not counted;
- **latency**: on running workers, enqueue a stamp every ``interval_s`` (optionally under
  a paced background load) and read enqueue-to-start times from the stamps;
- **enqueue**: one task per call, in one thread or several, and bulk where supported.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench import procs, stamp


class System(Protocol):
    name: str
    #: The system has a real bulk enqueue (one round trip for many tasks).
    bulk_supported: bool
    #: Calls from several threads at once are safe (a thread-safe client).
    threads_supported: bool

    def reset(self) -> None:
        """Start from empty queues (called before each measurement)."""

    def enqueue_noops(self, n: int) -> None:
        """Enqueue ``n`` no-op tasks, one call (one round trip) per task."""

    def enqueue_noops_bulk(self, n: int) -> None:
        """Enqueue ``n`` no-op tasks in as few round trips as the system allows."""

    def enqueue_stamp(self, t0_ns: int, *, last: bool = False) -> None:
        """Enqueue one stamp task; ``last``: it must start after every earlier task."""

    def worker_commands(self, processes: int) -> list[list[str]]:
        """Commands starting ``processes`` worker processes in their fast configuration."""

    def worker_env(self) -> dict[str, str]:
        """Extra environment of the worker processes."""

    def close(self) -> None: ...


@dataclass
class DrainResult:
    rate: float
    elapsed_s: float
    rss_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)


class BenchFailure(RuntimeError):
    """A measurement could not complete (a worker died, a timeout passed)."""


def drain(
    system: System,
    n: int,
    processes: int,
    work_dir: str,
    *,
    timeout_s: float = 600.0,
    during: Callable[[], None] | None = None,
    after: Callable[[], dict[str, Any]] | None = None,
    cpu_groups: Callable[[list[Any]], Mapping[str, Iterable[int]]] | None = None,
) -> DrainResult:
    """Drain ``n`` pre-enqueued tasks with ``processes`` worker processes.

    ``during`` is called every poll while draining (samplers); ``after`` once the last
    task started, with the workers still running (e.g. to wait for the record).
    ``cpu_groups(workers)`` names groups of processes whose CPU time between the first
    and the last task's start goes to ``extra["cpu_s"]`` (seconds per group)."""
    system.reset()
    path = _fresh(work_dir, f"{system.name}-drain{processes}.stamps")
    # A system with a start-up that runs beside its first tasks (DTQ's workers start
    # their recorder child after their first claim) holds its queue until the workers
    # are fully up, so that the window measures steady state, as for the others.
    gate: Any = system if hasattr(system, "hold") else None
    if gate is not None:
        gate.hold()
    system.enqueue_stamp(0)
    bulk = system.enqueue_noops_bulk if system.bulk_supported else system.enqueue_noops
    for i in range(0, n - 2, 1000):
        bulk(min(1000, n - 2 - i))
    system.enqueue_stamp(1, last=True)
    workers = procs.start(
        system.worker_commands(processes),
        {**system.worker_env(), stamp.ENV: path},
        os.path.join(work_dir, f"{system.name}-workers.log"),
    )
    if gate is not None:
        gate.release(workers)
    sampler = procs.CpuSampler(lambda: cpu_groups(workers)) if cpu_groups else None
    next_sample = 0.0
    try:
        deadline = time.monotonic() + timeout_s
        while stamp.count(path) < 2:
            if sampler is not None and time.monotonic() >= next_sample:
                sampler.sample()
                next_sample = time.monotonic() + 0.02
            if not procs.alive(workers):
                raise BenchFailure(f"{system.name}: a worker exited; see {work_dir}")
            if time.monotonic() > deadline:
                raise BenchFailure(f"{system.name}: drain of {n} timed out after {timeout_s} s")
            if during is not None:
                during()
            time.sleep(0.005)
        if sampler is not None:
            sampler.sample()
        starts = [s for _, s in stamp.read(path)]
        elapsed = (max(starts) - min(starts)) / 1e9
        rss = procs.tree_rss_bytes(workers)
        extra = after() if after is not None else {}
        if sampler is not None:
            extra["cpu_s"] = sampler.between(min(starts), max(starts))
    finally:
        procs.stop(workers)
    return DrainResult((n - 1) / elapsed if elapsed > 0 else float("nan"), elapsed, rss, extra)


def latency(
    system: System,
    samples: int,
    work_dir: str,
    *,
    interval_s: float = 0.02,
    processes: int = 1,
    load_command: list[str] | None = None,
) -> tuple[list[float], list[float]]:
    """Enqueue-to-start latencies and durations of the enqueue calls themselves (ms,
    ascending) of ``samples`` stamps on running workers. ``load_command`` runs meanwhile
    (a process enqueueing a paced background load, with the workers' environment).
    A latency runs from just before the enqueue call to the handler's first line, so it
    includes the enqueue call."""
    system.reset()
    path = _fresh(work_dir, f"{system.name}-latency.stamps")
    log = os.path.join(work_dir, f"{system.name}-workers.log")
    env = {**system.worker_env(), stamp.ENV: path}
    workers = procs.start(system.worker_commands(processes), env, log)
    loaders: list[Any] = []
    try:
        _warm_up(system, workers, path)
        if load_command:
            loaders = procs.start([load_command], env, log)
            time.sleep(1.0)  # let the load settle
        next_at = time.monotonic()
        calls = []
        for _ in range(samples):
            t0 = time.time_ns()
            system.enqueue_stamp(t0)
            calls.append((time.time_ns() - t0) / 1e6)
            next_at += interval_s
            time.sleep(max(0.0, next_at - time.monotonic()))
        procs.stop(loaders)
        deadline = time.monotonic() + 30.0
        while sum(1 for t0, _ in stamp.read(path) if t0 > 0) < samples:
            if time.monotonic() > deadline or not procs.alive(workers):
                raise BenchFailure(f"{system.name}: stamps missing; see {work_dir}")
            time.sleep(0.01)
    finally:
        procs.stop(loaders)
        procs.stop(workers)
    return sorted((s - t0) / 1e6 for t0, s in stamp.read(path) if t0 > 0), sorted(calls)


def completion_rate(
    system: System,
    work_dir: str,
    load_command: list[str],
    completed: Callable[[], float],
    *,
    settle_s: float = 2.0,
    window_s: float = 6.0,
) -> float:
    """Tasks per second one worker process completes while ``load_command`` enqueues
    (the two at once on the same machine, as a live queue runs): ``completed()`` read
    ``settle_s`` after the load starts and again ``window_s`` later."""
    system.reset()
    path = _fresh(work_dir, f"{system.name}-sustained.stamps")
    log = os.path.join(work_dir, f"{system.name}-workers.log")
    env = {**system.worker_env(), stamp.ENV: path}
    workers = procs.start(system.worker_commands(1), env, log)
    loaders: list[Any] = []
    try:
        _warm_up(system, workers, path)
        loaders = procs.start([load_command], env, log)
        time.sleep(settle_s)  # a measurement window, not a synchronisation
        first, start = completed(), time.monotonic()
        time.sleep(window_s)
        last, end = completed(), time.monotonic()
        if not procs.alive(workers):
            raise BenchFailure(f"{system.name}: a worker exited under load; see {work_dir}")
    finally:
        procs.stop(loaders)
        procs.stop(workers)
    return (last - first) / (end - start)


def _warm_up(system: System, workers: list[Any], path: str) -> None:
    """Wait until the workers run tasks (imports, connections, registration done)."""
    deadline = time.monotonic() + 60.0
    seen = 0
    while seen < 5:
        if not procs.alive(workers):
            raise BenchFailure(f"{system.name}: a worker exited during warm-up")
        if time.monotonic() > deadline:
            raise BenchFailure(f"{system.name}: workers did not start within 60 s")
        system.enqueue_stamp(-1)
        time.sleep(0.1 if seen == 0 else 0.02)
        seen = stamp.count(path)
    time.sleep(0.2)


def enqueue_rate(system: System, n: int, *, threads: int = 1, bulk: bool = False) -> float:
    """Tasks per second enqueued (no workers running), in steady state: each thread makes
    one call before the clock starts, so that opening connections and first calls are not
    counted, for DTQ and peers alike (they had made DTQ's 8-thread run of 2,000 tasks
    ≈ a third slower: 3,198 against 4,768/s on 2026-12-04)."""
    system.reset()
    call = system.enqueue_noops_bulk if bulk else system.enqueue_noops
    chunk = 1000 if bulk else n
    per_thread = max(1, n // threads)

    started: list[float] = []
    # The clock starts once every thread has made its first call (the barrier's action).
    warm = threading.Barrier(threads, action=lambda: started.append(time.perf_counter()))

    def work() -> None:
        call(1)
        warm.wait()
        for i in range(0, per_thread, chunk):
            call(min(chunk, per_thread - i))

    if threads == 1:
        work()  # in the calling thread: some peers' clients are bound to it
    else:
        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    return per_thread * threads / (time.perf_counter() - started[0])


def _fresh(work_dir: str, name: str) -> str:
    path = os.path.join(work_dir, name)
    if os.path.exists(path):
        os.remove(path)
    return path
