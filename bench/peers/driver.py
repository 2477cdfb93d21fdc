"""Run one bench scenario on one peer and print its figures as one JSON line.

    <peer venv>/bin/python -m bench.peers.driver PEER SCENARIO --n N --work-dir DIR

Run from the repository root with ``BENCH_REDIS_URL`` naming the peer's own Redis
database (and ``BENCH_DATABASE_URL`` the database of a peer queueing in PostgreSQL).
Scenarios: enqueue_one, enqueue_bulk, drain (``--processes``), latency (``--samples``,
``--interval``). A peer whose worker has a concurrency setting names the ones to try
(``concurrencies``); its drain runs once per setting and reports the best as ``rate``.
Exit status 3: the peer does not support the scenario; 4: the peer is skipped, its
runtime is missing here (the JSON line says which: ``{"skipped": "..."}``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from bench import drive
from bench.peers import PEERS
from bench.peers.base import PeerUnavailable
from bench.stats import percentile


def run(peer: str, scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    try:
        system = importlib.import_module(f"bench.peers.{peer}").make()
    except (PeerUnavailable, ImportError) as exc:
        return {"skipped": str(exc) if isinstance(exc, PeerUnavailable) else f"{peer}: {exc}"}
    try:
        if scenario == "enqueue_one":
            return {"rate": drive.enqueue_rate(system, args.n)}
        if scenario == "enqueue_bulk":
            if not system.bulk_supported:
                return {"unsupported": f"{peer} has no bulk enqueue"}
            return {"rate": drive.enqueue_rate(system, args.n, bulk=True)}
        if scenario == "drain":
            return drain(system, args)
        if scenario == "latency":
            lat, calls = drive.latency(
                system, args.samples, args.work_dir, interval_s=args.interval
            )
            out = {f"p{p}": percentile(lat, p) for p in (50, 90, 99)}
            out["call_p50"] = percentile(calls, 50)
            if hasattr(system, "pipe_us"):
                out["pipe_us"] = system.pipe_us()
            return out
        raise SystemExit(f"unknown scenario {scenario!r}")
    finally:
        system.close()


def drain(system: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The drain at each of the peer's concurrency settings (or its one configuration):
    the best rate, and per setting its rate, worker RSS and CPU per task by process group
    (``cpu_us``: the worker processes and the server holding the queue)."""
    runs = {}
    for conc in getattr(system, "concurrencies", None) or (None,):
        if conc is not None:
            system.concurrency = conc
        res = drive.drain(
            system, args.n, args.processes, args.work_dir, cpu_groups=system.cpu_groups
        )
        cpu = res.extra.get("cpu_s", {})
        pending = system.pending() if hasattr(system, "pending") else None
        runs[conc] = {
            "rate": res.rate,
            "elapsed_s": res.elapsed_s,
            "rss_bytes": res.rss_bytes,
            "cpu_us": {g: s * 1e6 / max(1, args.n - 1) for g, s in cpu.items()},
        }
        if pending is not None:  # counted in the queue after the drain
            runs[conc]["drained"] = args.n - pending
    best = max(runs, key=lambda c: runs[c]["rate"])
    out = dict(runs[best])
    if best is not None:
        out["concurrency"] = best
        out["by_concurrency"] = {str(c): r for c, r in runs.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("peer", choices=PEERS)
    parser.add_argument("scenario")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--work-dir", default=".dtq/bench")
    args = parser.parse_args()
    out = run(args.peer, args.scenario, args)
    print(json.dumps(out), flush=True)
    sys.exit(4 if "skipped" in out else 3 if "unsupported" in out else 0)


if __name__ == "__main__":
    main()
