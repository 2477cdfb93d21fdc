"""Baseline figures of the queue core in one process (no HTTP, no worker processes).

    .venv/bin/python bench/core.py [N]

The lead's original baseline, now folded into ``dtq bench``: this runs its scenarios
(enqueue one at a time and in bulk, the in-process claim→complete loop with and without
the recorder) through the harness, on a private redis-server and a fresh
database. Same as ``dtq bench --scenario enqueue,bulk,inprocess --n N``.
"""

from __future__ import annotations

import dataclasses
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
    sys.path[0] = REPO  # run as a script: import the ``bench`` package, not its modules


def main() -> None:
    from bench import run

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    opts = dataclasses.replace(run.Options(), scenarios=("enqueue", "bulk", "inprocess"), n=n)
    sys.exit(run.main(opts, ["--scenario", "enqueue,bulk,inprocess", "--n", str(n)]))


if __name__ == "__main__":
    main()
