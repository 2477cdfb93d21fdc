"""Build one venv per peer from bench/peers/requirements.txt (lines tagged ``# <peer>``).

python -m bench.peers.setup [--root .dtq/bench-venv] [PEER ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS = os.path.join(HERE, "requirements.txt")
PEERS = ("rq", "celery", "dramatiq", "huey", "arq", "saq", "taskiq")


def requirements() -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    with open(REQUIREMENTS) as f:
        for line in f:
            spec, _, tag = line.partition("#")
            if spec.strip() and tag.strip():
                out[tag.split()[0]].append(spec.strip())
    return dict(out)


def python_of(root: str, peer: str) -> str:
    return os.path.join(root, peer, "bin", "python")


def ensure(root: str, peers: list[str], python: str = sys.executable) -> dict[str, str]:
    """Create missing venvs; returns peer → its python. A marker file holding the
    requirement lines makes a changed requirements file rebuild that venv."""
    reqs = requirements()
    out = {}
    for peer in peers:
        venv = os.path.join(root, peer)
        marker = os.path.join(venv, "bench-requirements.txt")
        wanted = "\n".join(reqs[peer]) + "\n"
        have = open(marker).read() if os.path.exists(marker) else None
        if have != wanted:
            print(f"bench: installing {peer} into {venv}", file=sys.stderr, flush=True)
            subprocess.run([python, "-m", "venv", "--clear", venv], check=True)
            subprocess.run(
                [os.path.join(venv, "bin", "pip"), "install", "-q", *reqs[peer]], check=True
            )
            with open(marker, "w") as f:
                f.write(wanted)
        out[peer] = python_of(root, peer)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=os.path.join(".dtq", "bench-venv"))
    parser.add_argument("peers", nargs="*", default=list(PEERS))
    args = parser.parse_args()
    for peer, python in ensure(args.root, args.peers).items():
        print(peer, python)


if __name__ == "__main__":
    main()
