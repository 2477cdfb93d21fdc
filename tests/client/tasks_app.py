"""Handlers of the public-API tests, as a user's tasks module (``--tasks``)."""

from __future__ import annotations

from typing import Any

import dtq


@dtq.task("client.add", queue="client", max_attempts=2)
def add(payload: dict[str, Any], ctx: dtq.Context) -> int:
    return int(payload["a"]) + int(payload["b"])


@dtq.task("client.boom", queue="client", max_attempts=1)
def boom(payload: dict[str, Any]) -> None:
    raise ValueError(f"boom {payload.get('n')}")


@dtq.task
def bare(payload: dict[str, Any]) -> str:
    return "bare"
