"""Long-running DTQ processes (``dtq worker``, ``dtq api``, ``dtq record``) take what
their start-up built out of the garbage collector's reach.

A full (generation 2) collection walks every object the collector tracks: in a worker,
the modules, classes and clients imported at start-up are most of them. At full drain
speed a full collection came every few seconds and stopped every thread for tens of
milliseconds, so the ready set grew and the enqueue-to-start latency of whatever
arrived meanwhile rose by as much (bench/HISTORY.md). ``gc.freeze()`` moves everything
alive at that moment into a permanent generation that collections skip, which makes
the same collections about twenty times shorter. Objects made later are collected as
before.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Call once set-up is done, before serving: collect start-up garbage first, so that
    none of it is kept for good."""
    gc.collect()
    gc.freeze()
