"""The fault suite's handler, loaded with ``dtq worker --tasks tests.faults.fault_tasks``.

``fault.run`` appends to the run log (the file named by ``FAULTS_RUNLOG``) one line when it
starts and one when it ends::

    start <task id> <attempt> <fence> <pid> <start time>
    end <task id> <attempt> <fence> <pid> <start time> <end time>

so a run cut short (its worker killed) still shows: a start with no end. Each line is one
``write`` to a file opened with ``O_APPEND``, which the kernel appends whole, so lines of
several workers never interleave. Times are the wall clock (``time.time``), which every
process on the machine shares with Redis's ``TIME``, so the checker can compare them with
the history's timestamps.

The payload may ask for ``sleep`` seconds: a plain ``time.sleep`` that ignores
cancellation, like a handler that does not cooperate, so a run lasts as long as it says
whatever happens to its lease.
"""

from __future__ import annotations

import os
import time
from typing import Any

from workers.context import TaskContext
from workers.registry import task

#: The environment variable naming the run log.
RUNLOG_VAR = "FAULTS_RUNLOG"


def _append(line: str) -> None:
    fd = os.open(os.environ[RUNLOG_VAR], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@task("fault.run")
def run(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    who = f"{ctx.task_id} {ctx.attempt} {ctx.fence} {os.getpid()}"
    start = time.time()
    _append(f"start {who} {start:.6f}\n")
    seconds = float(payload.get("sleep", 0))
    if seconds > 0:
        time.sleep(seconds)
    _append(f"end {who} {start:.6f} {time.time():.6f}\n")
    return {"fence": ctx.fence}
