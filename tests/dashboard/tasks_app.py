"""Handlers of the dashboard's browser tests, as a user's tasks module (``--tasks``)."""

from __future__ import annotations

import os
from typing import Any

import dtq

XSS = "<img src=x onerror=alert(1)></script><script>alert(2)</script>"


@dtq.task("dash.ok", queue="dash")
def ok(payload: dict[str, Any]) -> dict[str, Any]:
    return {"echo": payload.get("text", ""), "html": XSS}


@dtq.task("dash.flaky", queue="dash", max_attempts=1)
def flaky(payload: dict[str, Any]) -> str:
    """Fails until the file named in the payload exists."""
    if not os.path.exists(str(payload["until"])):
        raise RuntimeError(f"not yet {XSS}\nsecond line of the error")
    return "ran again"
