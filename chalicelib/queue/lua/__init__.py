"""Loads the queue's Lua scripts: one atomic state change per ``<name>.lua`` file.

``_lib.lua`` (shared helpers and the queue key table) is prepended to every script, so
each file holds only its own transition while the retry, lock and event rules exist
once. The script's own text becomes the body of a function so that ``flush()`` (buffered
events and counters) runs once on every return path. Scripts are registered with
redis-py, which runs them by SHA and reloads them if the server lost its script cache.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


def script_names() -> list[str]:
    """Every ``<name>.lua`` beside this file except the shared library."""
    here = resources.files(__package__)
    return sorted(
        e.name[:-4] for e in here.iterdir() if e.name.endswith(".lua") and e.name != "_lib.lua"
    )


@cache
def source(name: str) -> str:
    """The full text of one script, library included."""
    here = resources.files(__package__)
    lib = (here / "_lib.lua").read_text(encoding="utf-8")
    body = (here / f"{name}.lua").read_text(encoding="utf-8")
    return (
        f"{lib}\nlocal function main()\n{body}\nend\nlocal reply = main()\nflush()\nreturn reply\n"
    )
