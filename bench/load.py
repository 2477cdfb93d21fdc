"""A paced background load of DTQ no-ops, in its own process (so that the latency
probe's enqueues do not share a GIL with the load).

    python -m bench.load RATE   # with the DTQ_* variables of the queue under test

Enqueues ``RATE`` tasks a second with ``enqueue_many`` every 10 ms until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from chalicelib import deps
from chalicelib.settings import Settings


def main() -> None:
    rate = float(sys.argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    svc = deps.build(Settings.from_env(os.environ))
    try:
        start = time.monotonic()
        sent = 0
        while not stop.is_set():
            due = int((time.monotonic() - start) * rate) - sent
            if due > 0:
                svc.client.enqueue_many([{"name": "dtq.noop"}] * due)
                sent += due
            stop.wait(0.01)
    finally:
        svc.close()


if __name__ == "__main__":
    main()
