"""Adapters running the bench scenarios on peer task queues, one module per peer.

These modules run inside the peers' own venv (``.dtq/bench-venv``): they import only the
standard library, ``redis`` and their peer, never DTQ.
"""

#: Every peer, in the order of the tables (the one list: run.py, driver.py, setup.py).
from __future__ import annotations

PEERS = (
    "rq",
    "celery",
    "dramatiq",
    "huey",
    "arq",
    "saq",
    "taskiq",
    "bullmq",
    "procrastinate",
    "pgqueuer",
)
