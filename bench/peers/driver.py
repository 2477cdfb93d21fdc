"""Run one bench scenario on one peer and print its figures as one JSON line.

    <peer venv>/bin/python -m bench.peers.driver PEER SCENARIO --n N --work-dir DIR

Run from the repository root with ``BENCH_REDIS_URL`` naming the peer's own Redis
database. Scenarios: enqueue_one, enqueue_bulk, drain (``--processes``), latency
(``--samples``, ``--interval``). Exit status 3: the peer does not support the scenario.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from bench import drive
from bench.stats import percentile

PEERS = ("rq", "celery", "dramatiq", "huey", "arq", "saq", "taskiq")


def run(peer: str, scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    system = importlib.import_module(f"bench.peers.{peer}").make()
    try:
        if scenario == "enqueue_one":
            return {"rate": drive.enqueue_rate(system, args.n)}
        if scenario == "enqueue_bulk":
            if not system.bulk_supported:
                return {"unsupported": f"{peer} has no bulk enqueue"}
            return {"rate": drive.enqueue_rate(system, args.n, bulk=True)}
        if scenario == "drain":
            res = drive.drain(system, args.n, args.processes, args.work_dir)
            return {"rate": res.rate, "elapsed_s": res.elapsed_s, "rss_bytes": res.rss_bytes}
        if scenario == "latency":
            lat, calls = drive.latency(
                system, args.samples, args.work_dir, interval_s=args.interval
            )
            out = {f"p{p}": percentile(lat, p) for p in (50, 90, 99)}
            return {**out, "call_p50": percentile(calls, 50)}
        raise SystemExit(f"unknown scenario {scenario!r}")
    finally:
        system.close()


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
    sys.exit(3 if "unsupported" in out else 0)


if __name__ == "__main__":
    main()
