"""The BullMQ, procrastinate and pgqueuer adapters of `dtq bench --peers` run every
scenario on a few jobs and drain all of them; a peer whose runtime is missing is skipped
with one line and DTQ's figures still come out. No assertion on speed.

The peers' venvs (and BullMQ's npm packages) are built on first use in .dtq/bench-venv,
as `dtq bench --peers` builds them; that first install is the slow part."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench.peers import setup
from bench.redis_server import RedisServer
from bench.run import drop_database

REPO = Path(__file__).resolve().parents[2]
VENV_ROOT = str(REPO / ".dtq" / "bench-venv")
DTQ = os.path.join(os.path.dirname(sys.executable), "dtq")
N = 50


@pytest.fixture(scope="module")
def pythons() -> dict[str, str]:
    """The new peers' venvs, installed when missing (npm and PyPI)."""
    skipped: list[str] = []
    ready = setup.ensure(VENV_ROOT, ["bullmq", "procrastinate", "pgqueuer"], skipped=skipped)
    assert not skipped, skipped
    return ready


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer()  # the peers flush their database: never the shared Redis
    yield server.url(8)
    server.stop()


def _peer_database(database_url: str, peer: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path=f"/bench_{peer}_test_{os.getpid()}"))


def drive(
    python: str, peer: str, scenario: str, env: dict[str, str], tmp: Path, *args: str
) -> tuple[int, dict[str, Any]]:
    cp = subprocess.run(
        [python, "-m", "bench.peers.driver", peer, scenario, "--work-dir", str(tmp), *args],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.stdout.strip(), cp.stderr
    return cp.returncode, json.loads(cp.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(600)  # the first run installs the peers
@pytest.mark.parametrize("peer", ["bullmq", "procrastinate", "pgqueuer"])
def test_peer_runs_every_scenario_and_drains_all_jobs(
    peer: str, pythons: dict[str, str], redis_url: str, database_url: str, tmp_path: Path
) -> None:
    database = _peer_database(database_url, peer)
    env = {"BENCH_REDIS_URL": redis_url, "BENCH_DATABASE_URL": database}
    try:
        for scenario in ("enqueue_one", "enqueue_bulk"):
            rc, out = drive(pythons[peer], peer, scenario, env, tmp_path, "--n", str(N))
            assert rc == 0 and out["rate"] > 0, out
        rc, out = drive(pythons[peer], peer, "drain", env, tmp_path, "--n", str(N))
        assert rc == 0, out
        runs = out.get("by_concurrency", {"-": out})
        if peer == "bullmq":
            assert set(runs) == {"1", "16", "100"}
            assert out["rate"] == max(r["rate"] for r in runs.values())
        for run in runs.values():
            assert run["drained"] == N, out  # nothing left in the queue afterwards
            assert run["rate"] > 0 and run["rss_bytes"] > 0
            assert set(run["cpu_us"]) == {"worker", "postgres" if peer != "bullmq" else "redis"}
        rc, out = drive(pythons[peer], peer, "latency", env, tmp_path, "--samples", "10")
        assert rc == 0, out
        assert 0 < out["p50"] <= out["p90"] <= out["p99"]
    finally:
        if peer != "bullmq":
            drop_database(database)


@pytest.mark.timeout(120)
def test_bullmq_without_node_is_skipped_with_one_line(
    pythons: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    missing = {"BENCH_NODE": str(tmp_path / "no-such-node")}
    rc, out = drive(
        pythons["bullmq"],
        "bullmq",
        "enqueue_one",
        {"BENCH_REDIS_URL": redis_url, **missing},
        tmp_path,
        "--n",
        "5",
    )
    assert rc == 4
    assert list(out) == ["skipped"]
    assert out["skipped"].startswith(
        f"bullmq: skipped, no node runtime ({missing['BENCH_NODE']} not found"
    )


@pytest.mark.timeout(120)
def test_dtq_bench_keeps_its_figures_when_a_peer_is_skipped(
    pythons: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    report = tmp_path / "results.json"
    cp = subprocess.run(
        [
            DTQ,
            "bench",
            "--quick",
            "--scenario",
            "enqueue",
            "--peers",
            "bullmq",
            "--database-url",
            database_url,
            "--json",
            str(report),
            "--work-dir",
            str(tmp_path),
        ],
        env={**os.environ, "BENCH_NODE": str(tmp_path / "no-such-node")},
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert cp.returncode == 0, cp.stdout + cp.stderr
    skipped = [line for line in cp.stdout.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 1 and "bullmq: skipped, no node runtime" in skipped[0], cp.stdout
    data = json.loads(report.read_text())
    assert data["errors"] == []
    systems = {f["system"] for f in data["figures"]}
    assert systems == {"dtq"}
    assert data["skipped"] == [skipped[0].removeprefix("skipped: ")]
