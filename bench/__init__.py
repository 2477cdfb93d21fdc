"""DTQ's benchmark harness (``dtq bench``); see bench/README.md."""

#: Every DTQ scenario, in the order they run (``dtq bench --scenario``).
from __future__ import annotations

SCENARIOS = (
    "enqueue",
    "bulk",
    "api",
    "drain",
    "inprocess",
    "latency",
    "spawn",
    "claim",
    "memory",
    "cluster",
)
