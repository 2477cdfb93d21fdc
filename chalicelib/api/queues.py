"""Queue endpoints: depths and settings (pause, rate limit, concurrency, webhook)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chalicelib.api.web import Web
from chalicelib.core.errors import NotFound, Unavailable, ValidationError
from chalicelib.core.forms import Form
from chalicelib.core.validation import NAME_RE, is_http_url
from chalicelib.queue.scripts import Queue
from chalicelib.record.deliveries import Deliveries

#: Score span of one priority band in a ready set (see _lib.lua PRIO_SPAN).
_PRIO_SPAN = 2**48
_STATES = ("scheduled", "queued", "running", "retrying", "dead")


def list_queues(web: Web) -> dict[str, Any]:
    queue = web.services.queue
    names = queue.known_queues()
    return {"queues": describe(queue, names, _webhooks(web, names))}


def get_queue(web: Web, name: str) -> dict[str, Any]:
    queue = web.services.queue
    if not _valid_name(name) or name not in queue.known_queues():
        raise NotFound(f"queue {name[:100]!r} not found")
    return describe(queue, [name], _webhooks(web, [name]))[0]


def patch_queue(web: Web, name: str, body: Any) -> dict[str, Any]:
    if not _valid_name(name):
        message = "must be 1-100 characters of [A-Za-z0-9_.:-]"
        raise ValidationError(f"name {message}", details=[{"field": "name", "message": message}])
    form = Form(body, {"paused", "rate_limit", "concurrency", "webhook_url"})
    fields: dict[str, str] = {}
    paused = form.boolean("paused")
    if paused is not None:
        fields["paused"] = "1" if paused else "0"
    if "concurrency" in form.body:
        concurrency = form.integer("concurrency", 1, 100_000, nullable=True)
        fields["concurrency"] = "" if concurrency is None else str(concurrency)
    if "rate_limit" in form.body:
        fields.update(_rate_limit(form))
    webhook = form.text("webhook_url", required=False, max_len=2000, nullable=True)
    if webhook is not None and not is_http_url(webhook):
        form.add("webhook_url", "must be an http(s) URL")
    form.done()
    queue = web.services.queue
    if fields:
        queue.configure(name, **fields)
    if "webhook_url" in form.body:
        # The queue's default for tasks without their own webhook_url; kept in Postgres
        # with the deliveries so that losing Redis does not lose it.
        Deliveries(web.services.store).set_queue_webhook(name, webhook)
    return describe(queue, [name], _webhooks(web, [name]))[0]


def _webhooks(web: Web, names: Sequence[str]) -> dict[str, str]:
    try:
        return Deliveries(web.services.store).queue_webhooks(names)
    except Unavailable:
        return {}  # depths come from Redis; the rest of the answer is still right


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


def describe(queue: Queue, names: Sequence[str], webhooks: dict[str, str] | None = None
             ) -> list[dict[str, Any]]:  # fmt: skip
    """Each queue as ``GET /queues`` shows it."""
    depths = queue.depths(names)
    oldest = _oldest_queued_ms(queue, names)
    now = queue.clock.now_ms()
    out = []
    for name in names:
        d = depths[name]
        meta = d["meta"]
        rate = meta.get("rl_rate")
        age = None if oldest.get(name) is None else max(0.0, (now - oldest[name]) / 1000)
        out.append({
            "name": name,
            "depth": {state: int(d[state]) for state in _STATES},
            "paused": meta.get("paused") == "1",
            "oldest_queued_age_seconds": age,
            "rate_limit": None if rate is None else {
                "per_second": float(rate), "burst": int(meta.get("rl_burst", "1")),
            },
            "concurrency": int(meta["concurrency"]) if "concurrency" in meta else None,
            "unrecorded_events": int(d["unrecorded_events"]),
            "webhook_url": (webhooks or {}).get(name),
        })  # fmt: skip
    return out


def _oldest_queued_ms(queue: Queue, names: Sequence[str]) -> dict[str, int]:
    """When the longest-waiting queued task of each queue became due.

    The ready set is ordered by priority, then FIFO, so the oldest task is the head of
    one of the ten priority bands: ten bounded lookups, never a scan.
    """
    r = queue.redis
    pipe = r.pipeline(transaction=False)
    for name in names:
        ready = queue.keys.queue(name).ready
        for band in range(10):
            pipe.zrangebyscore(ready, band * _PRIO_SPAN, (band + 1) * _PRIO_SPAN - 1, 0, 1)
    heads = pipe.execute()
    pipe = r.pipeline(transaction=False)
    asked: list[str] = []
    for i, name in enumerate(names):
        for head in heads[i * 10 : i * 10 + 10]:
            if head:
                pipe.hget(queue.keys.queue(name).task(head[0].decode()), "run")
                asked.append(name)
    oldest: dict[str, int] = {}
    for name, run in zip(asked, pipe.execute() if asked else [], strict=True):
        if run is not None:
            oldest[name] = min(oldest.get(name, int(run)), int(run))
    return oldest
