"""``dtq bench``: the benchmark of issue 7 (DTQ, and the peers with ``--peers``).

The harness lives in ``bench/`` at the repository root (not part of the installed
package: it needs a checkout, and its peer adapters run in their own venvs); this
module only parses the flags and hands over.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
from typing import Any

from chalicelib.core.errors import ConfigError

#: The checkout holding ``bench/`` (this file is ``<repo>/workers/cli/bench.py``).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark DTQ (and peer task queues) on this machine",
        description="Scenarios and peers: bench/README.md. Prints a table and writes JSON "
        "(.dtq/bench/results-<date>.json). Uses a private redis-server and a fresh "
        "Postgres database on the configured server.",
    )
    p.add_argument("--quick", action="store_true", help="small N, one run (CI smoke run)")
    p.add_argument(
        "--scenario",
        action="append",
        default=None,
        metavar="NAME",
        help="run only these (repeatable or comma-separated)",
    )
    p.add_argument(
        "--peers",
        nargs="?",
        const="all",
        default=None,
        metavar="LIST",
        help="also run the peers (all, or comma-separated names)",
    )
    p.add_argument("--runs", type=int, default=None, help="runs per DTQ figure (default 3)")
    p.add_argument("--peer-runs", type=int, default=None, help="runs per peer figure (2)")
    p.add_argument("--n", type=int, default=None, help="tasks per drain (20000)")
    p.add_argument("--peer-n", type=int, default=None, help="tasks per peer drain (20000)")
    p.add_argument("--latency-samples", type=int, default=None)
    p.add_argument(
        "--redis-url", default=None, help="use this Redis for DTQ instead of a private redis-server"
    )
    p.add_argument(
        "--database-url",
        default=None,
        help="default: a fresh database, dropped after",
    )
    p.add_argument("--json", default=None, metavar="PATH", dest="json_path")
    p.add_argument("--work-dir", default=os.path.join(".dtq", "bench"))
    p.set_defaults(func=cmd_bench)


def _names(values: list[str] | None, known: tuple[str, ...], flag: str) -> tuple[str, ...]:
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()]
    if names == ["all"]:
        return known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{flag}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return tuple(names)


def options(args: argparse.Namespace, run: Any) -> Any:
    """The harness's Options from the flags (``--quick`` changes the defaults only)."""
    overrides: dict[str, Any] = {}
    scenarios = _names(args.scenario, run.SCENARIOS, "--scenario")
    if scenarios:
        overrides["scenarios"] = scenarios
    if args.peers is not None:
        overrides["peers"] = _names([args.peers], run.PEERS, "--peers")
    for name in ("runs", "peer_runs", "n", "peer_n", "latency_samples"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1")
            overrides[name] = value
    if "n" in overrides and overrides["n"] < 3:
        raise ConfigError("--n: must be at least 3")
    for name in ("redis_url", "database_url", "json_path", "work_dir"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.quick:
        return run.Options.quick_defaults(**overrides)
    return dataclasses.replace(run.Options(), **overrides)


def cmd_bench(args: argparse.Namespace) -> int:
    if not os.path.isfile(os.path.join(REPO, "bench", "run.py")):
        raise ConfigError(f"dtq bench needs a checkout: {REPO}/bench/run.py is missing")
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    run = importlib.import_module("bench.run")
    argv = sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "bench" else []
    return int(run.main(options(args, run), argv))
