"""Build one venv per peer from bench/peers/requirements.txt (lines tagged ``# <peer>``).

python -m bench.peers.setup [--root .dtq/bench-venv] [PEER ...]

A Node peer (BullMQ) also gets its npm packages in its venv's folder, installed with
``npm ci`` from bench/peers/node/ (package.json and its lock). A peer whose runtime or
packages cannot be had here (no node or npm, a failed install) is skipped with one line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections import defaultdict

from bench.peers import PEERS

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS = os.path.join(HERE, "requirements.txt")
NODE_PACKAGES = os.path.join(HERE, "node")
#: Peers running in Node: their packages come from npm (bench/peers/node/).
NODE_PEERS = ("bullmq",)
#: Names the node binary (default: ``node`` on the PATH); npm is looked up beside it.
NODE_ENV = "BENCH_NODE"


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


def node_tools() -> tuple[str, str] | str:
    """(node, npm), or why they cannot be used."""
    wanted = os.environ.get(NODE_ENV) or "node"
    node = shutil.which(wanted)
    if node is None:
        return f"no node runtime ({wanted} not found; Node.js 20 or later and npm are needed)"
    npm = shutil.which("npm", path=os.path.dirname(node)) or shutil.which("npm")
    if npm is None:
        return f"no npm beside {node}"
    return node, npm


def ensure(
    root: str,
    peers: list[str],
    python: str = sys.executable,
    skipped: list[str] | None = None,
) -> dict[str, str]:
    """Create missing venvs; returns peer → its python. A marker file holding the
    requirement lines makes a changed requirements file rebuild that venv. A peer that
    cannot be installed is left out, with one line on stderr and in ``skipped``."""
    reqs = requirements()
    out = {}
    for peer in peers:
        why = _ensure_one(root, peer, reqs[peer], python)
        if why is None:
            out[peer] = python_of(root, peer)
            continue
        line = f"{peer}: skipped, {why}"
        print(f"bench: {line}", file=sys.stderr, flush=True)
        if skipped is not None:
            skipped.append(line)
    return out


def _ensure_one(root: str, peer: str, reqs: list[str], python: str) -> str | None:
    """Install one peer if needed; None when it is ready, else why it cannot be."""
    venv = os.path.join(root, peer)
    tools = node_tools() if peer in NODE_PEERS else None
    if isinstance(tools, str):
        return tools
    marker = os.path.join(venv, "bench-requirements.txt")
    wanted = "\n".join(reqs) + "\n"
    if tools is not None:
        with open(os.path.join(NODE_PACKAGES, "package-lock.json")) as f:
            wanted += f.read()
    have = None
    if os.path.exists(marker):
        with open(marker) as f:
            have = f.read()
    if have == wanted:
        return None
    print(f"bench: installing {peer} into {venv}", file=sys.stderr, flush=True)
    steps = [
        [python, "-m", "venv", "--clear", venv],
        [os.path.join(venv, "bin", "pip"), "install", "-q", *reqs],
    ]
    if tools is not None:
        steps.append([tools[1], "ci", "--prefix", venv, "--no-audit", "--no-fund", "--silent"])
    for step in steps:
        if step[1] == "ci":
            for name in ("package.json", "package-lock.json"):
                shutil.copy(os.path.join(NODE_PACKAGES, name), venv)
        cp = subprocess.run(step, capture_output=True, text=True)
        if cp.returncode != 0:
            tail = (cp.stderr or cp.stdout).strip().splitlines()[-1:] or ["no output"]
            return f"{os.path.basename(step[0])} {step[1]} failed: {tail[0]}"
    with open(marker, "w") as f:
        f.write(wanted)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=os.path.join(".dtq", "bench-venv"))
    parser.add_argument("peers", nargs="*", default=list(PEERS))
    args = parser.parse_args()
    for peer, python in ensure(args.root, args.peers).items():
        print(peer, python)


if __name__ == "__main__":
    main()
