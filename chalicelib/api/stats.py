"""``GET /stats/timeline``: per-minute counts and wait percentiles of the queues, kept
cluster-wide by the scripts (``service/timeline.py``)."""

from __future__ import annotations

from typing import Any

from chalicelib.api.web import Web
from chalicelib.core.forms import query_int, query_name
from chalicelib.service import timeline

TIMELINE_PARAMS = ("minutes", "queue")


def get_timeline(web: Web, params: dict[str, str]) -> dict[str, Any]:
    minutes = query_int(params, "minutes", 60, 1, timeline.MAX_MINUTES)
    queue = query_name(params, "queue", 100)
    names = None if queue is None else [queue]
    return {"buckets": timeline.buckets(web.services.queue, minutes, names)}
