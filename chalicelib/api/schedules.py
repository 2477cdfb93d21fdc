"""Schedule endpoints (admin only): create, list, read, update, delete, run now, preview.
The wall clock is read here, at the edge, and passed in as ``now``."""

from __future__ import annotations

from typing import Any

from chalice import Response  # type: ignore[attr-defined]

from chalicelib.api.http import Reply
from chalicelib.api.web import Web
from chalicelib.core.clock import utcnow
from chalicelib.service.schedules import Schedules, preview

PREVIEW_PARAMS = ("cron", "timezone", "after", "count")


def _schedules(web: Web) -> Schedules:
    return Schedules(web.services.tasks)


def create(web: Web, body: Any) -> Reply:
    return Reply(_schedules(web).create(body, utcnow()), 201)


def list_schedules(web: Web) -> dict[str, Any]:
    return {"schedules": _schedules(web).list(utcnow())}


def get(web: Web, raw_id: str) -> dict[str, Any]:
    return _schedules(web).get(raw_id, utcnow())


def update(web: Web, raw_id: str, body: Any) -> dict[str, Any]:
    return _schedules(web).update(raw_id, body, utcnow())


def delete(web: Web, raw_id: str) -> Response:
    _schedules(web).delete(raw_id)
    return Response(body="", status_code=204)


def run(web: Web, raw_id: str) -> Reply:
    return Reply(_schedules(web).run(raw_id, utcnow()), 201)


def preview_fires(web: Web, params: dict[str, str]) -> dict[str, Any]:
    return preview(params, utcnow())
