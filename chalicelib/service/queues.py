"""Queues as a whole: their depths and settings (pause, rate limit, concurrency) in
Redis, and their default webhook, kept in PostgreSQL with the deliveries so that losing
Redis does not lose it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chalicelib.core.errors import NotFound, Unavailable
from chalicelib.core.models import Durability
from chalicelib.queue.scripts import DURABILITY_FIELD, Queue, durability_of
from chalicelib.record.deliveries import Deliveries
from chalicelib.record.store import Store

_STATES = ("scheduled", "queued", "running", "retrying", "dead")


class Queues:
    def __init__(self, queue: Queue, store: Store) -> None:
        self.queue = queue
        self.deliveries = Deliveries(store)

    def describe(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Each queue (every known one when ``names`` is None) as ``GET /queues`` shows it."""
        names = self.queue.known_queues() if names is None else names
        return _describe(self.queue, names, self._webhooks(names))

    def get(self, name: str) -> dict[str, Any]:
        if name not in self.queue.known_queues():
            raise NotFound(f"queue {name[:100]!r} not found")
        return self.describe([name])[0]

    def configure(
        self,
        name: str,
        fields: dict[str, str],
        *,
        durability: Durability | None = None,
        webhook: str | None = None,
        set_webhook: bool = False,
    ) -> None:
        """Set meta fields (paused, concurrency, rl_rate, rl_burst; '' removes one), the
        queue's durability and, with ``set_webhook``, its default webhook (None removes
        it)."""
        if fields or durability is not None:
            self.queue.configure(name, durability=durability, **fields)
        if set_webhook:
            self.deliveries.set_queue_webhook(name, webhook)

    def _webhooks(self, names: Sequence[str]) -> dict[str, str]:
        try:
            return self.deliveries.queue_webhooks(names)
        except Unavailable:
            return {}  # depths come from Redis; the rest of the answer is still right


def _describe(
    queue: Queue, names: Sequence[str], webhooks: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Each queue as ``GET /queues`` shows it."""
    depths = queue.depths(names)
    oldest = queue.oldest_queued_ms(names)
    now = queue.clock.now_ms()
    out = []
    for name in names:
        d = depths[name]
        meta = d["meta"]
        rate = meta.get("rl_rate")
        age = None if oldest.get(name) is None else max(0.0, (now - oldest[name]) / 1000)
        out.append(
            {
                "name": name,
                "depth": {state: int(d[state]) for state in _STATES},
                "paused": meta.get("paused") == "1",
                "oldest_queued_age_seconds": age,
                "rate_limit": None
                if rate is None
                else {
                    "per_second": float(rate),
                    "burst": int(meta.get("rl_burst", "1")),
                },
                "concurrency": int(meta["concurrency"]) if "concurrency" in meta else None,
                "unrecorded_events": int(d["unrecorded_events"]),
                "webhook_url": (webhooks or {}).get(name),
                "durability": durability_of(meta.get(DURABILITY_FIELD)).value,
            }
        )
    return out
