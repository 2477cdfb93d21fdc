"""`dtq bench --quick` runs end to end and reports its figures in the promised shape
(no assertion on speed: this machine's speed is not the code's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

DTQ = os.path.join(os.path.dirname(sys.executable), "dtq")
Figures = dict[tuple[str, str], dict[str, Any]]


def quick_bench(database_url: str, tmp_path: Path, scenarios: str, n: int) -> Figures:
    """Run ``dtq bench --quick`` on ``scenarios``; its figures by (scenario, metric)."""
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [
            DTQ,
            "bench",
            "--quick",
            "--scenario",
            scenarios,
            "--n",
            str(n),
            "--database-url",
            database_url,
            "--json",
            str(out),
            "--work-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "median" in proc.stdout and "tasks/s" in proc.stdout
    report = json.loads(out.read_text())
    assert report["errors"] == []
    assert set(report["noise"]) == {"start", "end"}
    return {(f["scenario"], f["metric"]): f for f in report["figures"]}


def test_quick_bench_reports_every_figure_with_n_runs_and_spread(
    database_url: str, tmp_path: Path
) -> None:
    figures = quick_bench(database_url, tmp_path, "enqueue,bulk,drain,claim,memory,spawn", 30)
    for key in [
        ("enqueue", "one at a time, 1 thread"),
        ("enqueue", "one at a time, 8 threads"),
        ("enqueue", "one at a time, 1 thread, durability queue"),
        ("enqueue", "one at a time, 8 threads, durability queue"),
        ("bulk", "enqueue_many, 1000/call"),
        ("bulk", "enqueue_many, 1000/call, durability queue"),
        ("spawn", "spawn → first claim, default (--record process)"),
        ("spawn", "spawn → first claim, --record off"),
        ("spawn", "spawn → its task recorded in PostgreSQL (--record process)"),
        ("drain", "1 process, concurrency 1"),
        ("drain", "1 process, concurrency 16"),
        ("drain", "2 processes, concurrency 16"),
        ("drain", "worker RSS, 1 process, concurrency 16"),
        ("drain", "record lag after last start, 1 process, concurrency 16"),
        ("claim", "claim(1) with 1,000 queued"),
        ("claim", "claim(100) with 10,000 queued"),
        ("memory", "Redis used_memory per queued task"),
    ]:
        fig = figures[key]
        assert fig["system"] == "dtq"
        assert fig["runs"] == 1 and fig["n"] > 0
        assert fig["min"] <= fig["median"] <= fig["max"]
        assert fig["median"] > 0
    # CPU per task: /proc counts in 10 ms ticks, so 30 tasks may read 0; the groups are
    # all there and add up to the total.
    cpu = {
        group: figures[("drain", f"CPU per task, {group}, 1 process, concurrency 16")]["median"]
        for group in ("worker", "recorder", "redis", "postgres", "total")
    }
    assert min(cpu.values()) >= 0
    assert abs(cpu["total"] - sum(v for g, v in cpu.items() if g != "total")) < 1e-6


def test_unknown_scenario_is_one_line_error() -> None:
    proc = subprocess.run(
        [DTQ, "bench", "--scenario", "nope"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("dtq: --scenario: unknown nope")


def test_quick_latency_scenario_loads_at_half_of_both_peaks(
    database_url: str, tmp_path: Path
) -> None:
    figures = quick_bench(database_url, tmp_path, "latency", 300)
    drain = figures[("drain", "1 process, concurrency 16")]["median"]
    sustained = figures[("latency", "sustained peak, enqueue and drain at once, 1 process")]
    assert sustained["n"] > 0 and 0 < sustained["median"] <= drain
    # Each loaded run names the load it ran under: half of each peak.
    for peak in (drain, sustained["median"]):
        loaded = [
            m
            for (s, m) in figures
            if s == "latency" and m.endswith(f"({peak / 2:,.0f} tasks/s) p99")
        ]
        assert len(loaded) == 1, sorted(m for _, m in figures)
        p99 = figures[("latency", loaded[0])]
        assert p99["median"] > 0 and p99["n"] == 20
    for p in (50, 90, 99):
        assert figures[("latency", f"idle worker p{p}")]["median"] > 0
        assert figures[("latency", f"idle worker, durability queue p{p}")]["median"] > 0


def test_quick_cluster_scenario_drains_on_one_and_three_shards(
    database_url: str, tmp_path: Path
) -> None:
    figures = quick_bench(database_url, tmp_path, "cluster", 600)
    label = "6 queues, 3 processes, concurrency 16"
    for shards, nodes in (("1 shard", 1), ("3 shards", 3)):
        drain = figures[("cluster", f"drain, {shards}, {label}")]
        assert drain["runs"] == 1 and drain["n"] == 600 and drain["median"] > 0
        for node in range(nodes):  # every Redis node's CPU over the measured window
            assert figures[("cluster", f"CPU, redis node {node}, {shards}")]["median"] >= 0
        assert ("cluster", f"CPU, redis node {nodes}, {shards}") not in figures
