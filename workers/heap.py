"""Long-running DTQ processes (``dtq worker``, ``dtq api``, ``dtq record``) take what
their start-up built out of the garbage collector's reach.

A full (generation 2) collection walks every object the collector tracks: in a worker,
the modules, classes and clients imported at start-up are most of them. Measured on the
bench machine at 9,200 tasks/s (2026-12-03): a full collection about every 4 s, each
17 to 30 ms with every thread stopped, so the ready set grew by ≈ 300 tasks and the
enqueue-to-start latency of whatever arrived meanwhile rose by as much. ``gc.freeze()``
moves everything alive at that moment into a permanent generation that collections
skip: the same collections then take ≈ 1 ms. Objects made later are collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Call once set-up is done, before serving: collect start-up garbage first, so that
    none of it is kept for good."""
    gc.collect()
    gc.freeze()
