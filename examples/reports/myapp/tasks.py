"""The tasks of a small reporting app: what `dtq worker --tasks myapp.tasks` runs."""

from __future__ import annotations

import dtq


@dtq.task("reports.render", queue="reports", max_attempts=3, timeout_seconds=60)
def render(payload: dict[str, object], ctx: dtq.Context) -> dict[str, object]:
    """Render one report; a real app would query, render and upload here."""
    pages = int(str(payload.get("pages", 3)))
    for _ in range(pages):
        if ctx.cancelled:  # canceled, or the attempt timed out: stop early
            raise dtq.Cancelled()
    return {"day": payload["day"], "pages": pages, "attempt": ctx.attempt}


@dtq.task("reports.notify", queue="reports")
def notify(payload: dict[str, object]) -> str:
    return f"sent {payload['day']} to {payload['to']}"
