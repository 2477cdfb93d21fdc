"""Spawn → first claim: how long a new ``dtq worker`` process takes to start a task that
is already waiting for it (what scaling from zero costs).

One stamp task is queued before the worker process exists. The figure runs from just
before ``Popen`` to the handler's first line (``bench/stamp.py``, one clock), so it holds
the interpreter's start, the imports, the connections, the registration and the claim.
Every spawn has a fresh key prefix, journal and process; the Redis server was already
checked against the record (by the harness's own client), as it is for every worker but
a deployment's first. Workers read and write bytecode caches (``PYTHONDONTWRITEBYTECODE``
cleared), as an installed wheel has them, and the first spawn of a run is not timed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from bench import procs, stamp
from bench.drive import BenchFailure
from bench.dtq_system import DTQ


@dataclass(frozen=True)
class Spawn:
    #: Popen → the handler's first line, seconds
    start_s: float
    #: Popen → the task's row shows it succeeded (10 ms polls); NaN with ``--record off``
    recorded_s: float
    #: CPU the worker process (not its children) used from Popen to that start: the
    #: figure the machine's other load moves least (/proc, 10 ms ticks; 5 ms samples)
    cpu_s: float


def spawn(system: DTQ, work_dir: str, record: str, *, timeout_s: float = 60.0) -> Spawn:
    """Start one ``dtq worker --record <record>`` with one stamp task queued; stop it
    once the task started (and, unless ``record`` is off, was recorded)."""
    system.reset()
    path = os.path.join(work_dir, "dtq-spawn.stamps")
    if os.path.exists(path):
        os.remove(path)
    system.enqueue_stamp(0)
    [command] = system.worker_commands(1)
    env = {**system.worker_env(), stamp.ENV: path, "PYTHONDONTWRITEBYTECODE": ""}
    log = os.path.join(work_dir, "dtq-spawn.log")
    before = time.time_ns()
    workers = procs.start([[*command, "--record", record]], env, log)
    cpu = procs.CpuSampler(lambda: {"worker": [workers[0].pid]})
    cpu.samples.append((before, {"worker": 0.0}))  # a new process has used none
    try:
        deadline = time.monotonic() + timeout_s
        while not (stamps := stamp.read(path)):
            cpu.sample()
            if not procs.alive(workers):
                raise BenchFailure(f"dtq: a spawned worker exited; see {log}")
            if time.monotonic() > deadline:
                raise BenchFailure(f"dtq: a spawned worker claimed nothing in {timeout_s} s")
            time.sleep(0.005)  # the stamp holds the time; polling only finds it
        cpu.sample()
        started = stamps[0][1]
        recorded = float("nan")
        if record != "off":
            lag = system.wait_recorded(system.last_id, timeout_s)
            if lag != lag:  # NaN: not recorded in time
                raise BenchFailure(f"dtq: a spawned worker's task was not recorded; see {log}")
            recorded = (time.time_ns() - before) / 1e9
    finally:
        procs.stop(workers)
    return Spawn((started - before) / 1e9, recorded, cpu.between(before, started)["worker"])
