"""Handlers for worker process tests: they leave a file when they start, so a test knows
the worker itself (not only the server) holds the task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.context import TaskContext
from workers.registry import task


@task("test.marked_sleep")
def marked_sleep(payload: dict[str, Any], ctx: TaskContext) -> None:
    Path(payload["dir"], f"{ctx.task_id}.started").touch()
    ctx.wait(float(payload["seconds"]))


@task("test.marked_gate")
def marked_gate(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Runs until the file ``<task id>.go`` appears in ``dir`` (or it is canceled)."""
    Path(payload["dir"], f"{ctx.task_id}.started").touch()
    while not Path(payload["dir"], f"{ctx.task_id}.go").exists():
        if ctx.wait(0.01):
            return
