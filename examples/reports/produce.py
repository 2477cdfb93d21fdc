"""A producer in the network: DTQ_REDIS_URL and DTQ_DATABASE_URL name the servers (or run
it with DTQ_API_URL and DTQ_USERNAME/DTQ_PASSWORD to go through the HTTP API)."""

from __future__ import annotations

import sys

from myapp.tasks import notify, render

import dtq


def main(day: str) -> None:
    dtq.connect()  # from the environment; it becomes the default of this process
    report = render.enqueue({"day": day, "pages": 4}, idempotency_key=f"render:{day}")
    print("render:", report.result(timeout=60))
    mails = notify.enqueue_many([{"day": day, "to": to} for to in ("ops", "sales")])
    print("notify:", [m.result(timeout=60) for m in mails])
    try:
        render.enqueue({"day": day}, priority=12)
    except dtq.ValidationError as exc:
        print("refused:", exc.details[0]["field"], exc.details[0]["message"])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "2026-12-06")
