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
