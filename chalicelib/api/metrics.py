"""``GET /metrics``: cluster-wide figures in the Prometheus text format (0.0.4) or JSON.

Nothing here is per process: task counters and histograms are kept by the Lua scripts
in each queue's stats hash (the recorders add their parked entries and history conflicts
to it), depths are the sizes of the state sets, liveness comes from
the fleet's heartbeat set, and HTTP figures are folded into one Redis hash by every API
instance (``httpstats.py``). Both formats are rendered from the same families, so they
always carry the same figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from chalicelib.api import httpstats
from chalicelib.api.http import Reply
from chalicelib.api.web import Web
from chalicelib.core.errors import ValidationError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Bounds (seconds) of the task wait/run histograms; must equal BUCKETS in lua/_lib.lua,
#: whose scripts count into field ``<name>:b<i>`` (i from 1; len + 1 is +Inf).
TASK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

_STATES = ("scheduled", "queued", "running", "retrying", "dead")
_COUNTERS = (
    ("task_throughput_total", "succeeded", "Tasks that succeeded (refused duplicates excluded)."),
    ("task_failures_total", "failures", "Failed attempts, the last one of a dead task included."),
    ("task_retries_total", "retries", "Failed attempts that were scheduled for a retry."),
    ("task_dead_total", "dead", "Tasks that exhausted their attempts (dead letters)."),
    ("task_duplicates_total", "duplicates", "Outcomes refused (late, duplicate or foreign)."),
    # Counted by the recorders (service/recorder.py), not the scripts; both should stay 0.
    ("task_parked_events_total", "parked", "Stream entries PostgreSQL refused (parked)."),
    (
        "task_history_conflicts_total",
        "history_conflicts",
        "Replayed transitions whose recorded history row differs.",
    ),
)

Labels = dict[str, str]


@dataclass
class Family:
    name: str
    type: str
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        self.samples.append((self.name + suffix, labels, value))


def collect(web: Web) -> list[Family]:
    svc = web.services
    queues = svc.queue.known_queues()
    depths = svc.queue.depths(queues)
    stats = svc.queue.stats(queues)
    depth = Family("task_queue_depth", "gauge", "Tasks per queue and status, now.")
    backlog = Family(
        "task_unrecorded_events", "gauge", "Transitions not yet written to PostgreSQL."
    )
    counters = [Family(name, "counter", text) for name, _, text in _COUNTERS]
    wait = Family("task_wait_seconds", "histogram", "From due to claimed, per attempt.")
    run = Family("task_run_seconds", "histogram", "From claimed to outcome, per attempt.")
    for q in queues:
        for state in _STATES:
            depth.add(depths[q][state], queue=q, status=state)
        backlog.add(depths[q]["unrecorded_events"], queue=q)
        for family, (_, key, _) in zip(counters, _COUNTERS, strict=True):
            family.add(stats[q].get(key, 0), queue=q)
        _histogram(wait, stats[q], "wait", TASK_BUCKETS, {"queue": q})
        _histogram(run, stats[q], "run", TASK_BUCKETS, {"queue": q})
    alive = Family("workers_alive", "gauge", "Workers seen within three heartbeat intervals.")
    alive.add(web.fleet.alive_count())
    return [depth, *counters, wait, run, alive, backlog, *_http_families(web)]


def _histogram(
    fam: Family, stats: dict[str, float], name: str, bounds: tuple[float, ...], labels: Labels
) -> None:
    running = 0.0
    for i, bound in enumerate(bounds, start=1):
        running += stats.get(f"{name}:b{i}", 0)
        fam.add(running, "_bucket", **labels, le=_num(bound))
    running += stats.get(f"{name}:b{len(bounds) + 1}", 0)
    fam.add(running, "_bucket", **labels, le="+Inf")
    fam.add(stats.get(f"{name}:sum", 0), "_sum", **labels)
    fam.add(stats.get(f"{name}:count", running), "_count", **labels)


def _http_families(web: Web) -> list[Family]:
    requests = Family("http_requests_total", "counter", "HTTP requests by route and status.")
    latency = Family("http_request_duration_seconds", "histogram", "HTTP request latency by route.")
    durations: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for key, value in sorted(web.http_stats.read().items()):
        kind, method, route, rest = key.split("|", 3)
        if kind == "n":
            requests.add(value, route=route, method=method, status=rest)
        else:
            durations[(method, route)][f"http:{rest}"] = value
    for (method, route), figures in sorted(durations.items()):
        _histogram(latency, figures, "http", httpstats.BUCKETS, {"route": route, "method": method})
    return [requests, latency]


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(float(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_text(families: list[Family]) -> str:
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {fam.help}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for name, labels, value in fam.samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(
                f"{name}{{{label_text}}} {_num(value)}" if labels else f"{name} {_num(value)}"
            )
    return "\n".join(lines) + "\n"


def render_json(families: list[Family]) -> dict[str, Any]:
    return {
        "metrics": [
            {
                "name": fam.name,
                "type": fam.type,
                "help": fam.help,
                "samples": [
                    {"name": name, "labels": labels, "value": value}
                    for name, labels, value in fam.samples
                ],
            }
            for fam in families
        ]
    }


def serve(web: Web, params: dict[str, str], accept: str | None) -> Reply:
    """Prometheus text, or JSON with ``?format=json`` or ``Accept: application/json``."""
    fmt = params.get("format")
    if fmt not in (None, "json", "prometheus"):
        message = "must be json or prometheus"
        raise ValidationError(
            f"format {message}", details=[{"field": "format", "message": message}]
        )
    families = collect(web)
    wants_json = fmt == "json" or (fmt is None and "application/json" in (accept or "").lower())
    if wants_json:
        return Reply(render_json(families))
    return Reply(render_text(families), headers={"Content-Type": CONTENT_TYPE})
