"""Figures: every measurement keeps its N, its runs and min / median / max."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Figure:
    """One measured quantity of one system in one scenario."""

    scenario: str
    system: str
    metric: str
    unit: str
    n: int
    values: list[float] = field(default_factory=list)
    #: True when bigger is better (rates); False for latencies, bytes, lag.
    higher_is_better: bool = True
    note: str = ""

    @property
    def runs(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.values:
            out.update(
                runs=self.runs, min=min(self.values), median=self.median, max=max(self.values)
            )
        else:
            out.update(runs=0, min=None, median=None, max=None)
        return out


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(p / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
