"""A paced background load of DTQ no-ops, in its own process (so that the latency
probe's enqueues do not share a GIL with the load).

    python -m bench.load RATE [STATS_PATH]   # with the DTQ_* variables of the queue under test

Enqueues ``RATE`` tasks a second with ``enqueue_many`` until SIGTERM: each call starts
``TICK_S`` after the previous one ended and carries the tasks due since then. Then writes
to ``STATS_PATH`` (JSON) how many calls and tasks it made in how many seconds.

Why a short tick: the load stands for many producers, whose tasks arrive spread out. A
probe enqueued right after a batch waits behind all of it (same priority, FIFO), so the
batch size, not DTQ, would set the tail: a batch every 10 ms plus the call's own time
(≈ 8 ms at 9,000/s) made batches of ≈ 170 tasks, ≈ 9 ms of work for one worker.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

from chalicelib.core.settings import Settings
from chalicelib.service import deps

#: Pause between the end of one call and the next (the call itself takes 2 to 4 ms here).
TICK_S = 0.002


def main() -> None:
    rate = float(sys.argv[1])
    stats_path = sys.argv[2] if len(sys.argv) > 2 else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    svc = deps.build(Settings.from_env(os.environ))
    start = time.monotonic()
    sent = calls = 0
    try:
        while not stop.is_set():
            due = int((time.monotonic() - start) * rate) - sent
            if due > 0:
                svc.tasks.enqueue_many([{"name": "dtq.noop"}] * due)
                sent += due
                calls += 1
            stop.wait(TICK_S)
    finally:
        svc.close()
        if stats_path:
            with open(stats_path, "w") as f:
                json.dump({"calls": calls, "tasks": sent, "seconds": time.monotonic() - start}, f)


if __name__ == "__main__":
    main()
