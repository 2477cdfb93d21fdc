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
(8 % of its spawn → first claim; 25 paired runs, bench/HISTORY.md). Imports make little
cyclic garbage (a few hundred objects).
"""

from __future__ import annotations

import gc


def pause_collector() -> None:
    """Call first in a long-running process, before its imports: no automatic collection
    runs until :func:`freeze_startup_heap`."""
    gc.disable()


def freeze_startup_heap(*, collect: bool = True) -> None:
    """Call once set-up is done, before serving; the collector then runs as usual again.
    ``collect``: first collect the start-up garbage, so that none of it is kept for good.
    ``dtq worker`` does not: the collection would cost its first claim 15 to 20 ms, and its
    start-up leaves ≈ 740 unreachable objects of ≈ 50,000, which stay frozen."""
    if collect:
        gc.collect()
    gc.freeze()
    gc.enable()
