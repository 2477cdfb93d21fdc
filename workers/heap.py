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

Before that, the start-up itself runs without automatic collections: each of them walks
a heap that the imports keep growing, and they cost a worker's imports ≈ 20 ms of CPU
(8 % of its spawn → first claim; 25 paired runs, bench/HISTORY.md). Imports make almost
no cyclic garbage (a few hundred objects), and the collection before the freeze takes
what there is.
"""

from __future__ import annotations

import gc


def pause_collector() -> None:
    """Call first in a long-running process, before its imports: no automatic collection
    runs until :func:`freeze_startup_heap`."""
    gc.disable()


def freeze_startup_heap() -> None:
    """Call once set-up is done (a worker: right after its first claim): collect start-up
    garbage first, so that none of it is kept for good; then collect as usual again."""
    gc.collect()
    gc.freeze()
    gc.enable()
