"""Handlers a DTQ bench worker loads with ``--tasks bench.handlers``."""

from __future__ import annotations

from typing import Any

from bench import stamp


def _stamp(payload: dict[str, Any]) -> None:
    stamp.stamp(int(payload["t0"]))


def register(registry: Any) -> None:
    registry.add("bench.stamp", _stamp)
