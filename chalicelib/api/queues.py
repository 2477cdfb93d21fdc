"""Queue endpoints: depths and settings (pause, rate limit, concurrency, webhook)."""

from __future__ import annotations

from typing import Any

from chalicelib.api.web import Web
from chalicelib.core.errors import NotFound, ValidationError
from chalicelib.core.forms import NAME_RE, Form
from chalicelib.core.models import Durability
from chalicelib.service.queues import Queues


def list_queues(web: Web) -> dict[str, Any]:
    return {"queues": _service(web).describe()}


def get_queue(web: Web, name: str) -> dict[str, Any]:
    if not _valid_name(name):
        raise NotFound(f"queue {name[:100]!r} not found")
    return _service(web).get(name)


def patch_queue(web: Web, name: str, body: Any) -> dict[str, Any]:
    if not _valid_name(name):
        message = "must be 1-100 characters of [A-Za-z0-9_.:-]"
        raise ValidationError(f"name {message}", details=[{"field": "name", "message": message}])
    form = Form(body, {"paused", "rate_limit", "concurrency", "webhook_url", "durability"})
    fields: dict[str, str] = {}
    paused = form.boolean("paused")
    if paused is not None:
        fields["paused"] = "1" if paused else "0"
    if "concurrency" in form.body:
        concurrency = form.integer("concurrency", 1, 100_000, nullable=True)
        fields["concurrency"] = "" if concurrency is None else str(concurrency)
    if "rate_limit" in form.body:
        fields.update(_rate_limit(form))
    webhook = form.url("webhook_url")
    durability = form.choice("durability", [d.value for d in Durability], required=False)
    form.done()
    service = _service(web)
    service.configure(
        name,
        fields,
        durability=None if durability is None else Durability(durability),
        webhook=webhook,
        set_webhook="webhook_url" in form.body,
    )
    return service.describe([name])[0]


def _service(web: Web) -> Queues:
    return Queues(web.services.queue, web.services.store)


def _rate_limit(form: Form) -> dict[str, str]:
    value = form.body["rate_limit"]
    if value is None:
        return {"rl_rate": "", "rl_burst": ""}
    sub = Form(value, {"per_second", "burst"}, prefix="rate_limit.")
    rate = sub.number("per_second", 0, 1_000_000, required=True)
    burst = sub.integer("burst", 1, 1_000_000, required=True)
    form.errors.extend(sub.errors)
    if rate is None or burst is None:
        return {}
    return {"rl_rate": repr(rate), "rl_burst": str(burst)}


def _valid_name(name: str) -> bool:
    return 1 <= len(name) <= 100 and NAME_RE.fullmatch(name) is not None
