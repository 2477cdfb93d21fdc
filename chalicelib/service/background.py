"""The record and the notifications it schedules, kept moving in the background.

Every long-running process that records (``dtq api``, ``dtq record`` — also the worker's
recorder child — and ``dtq worker --record thread``) runs the same two loops: the
recorder (Redis event streams → PostgreSQL, plus the dispatch backlog) and the notifier
(the webhook and SNS deliveries the recorder schedules). A process that records also
notifies, so a deployment of any one kind of process keeps both current.
"""

from __future__ import annotations

import threading

from chalicelib.service.deps import Services
from chalicelib.service.notify import Notifier
from chalicelib.service.recorder import Recorder

#: How long :meth:`Background.close` waits for each loop to finish its round.
JOIN_TIMEOUT_S = 10.0


class Background:
    """The recorder and the notifier of one process, each in its own thread."""

    def __init__(self, svc: Services, consumer: str) -> None:
        self.recorder = Recorder(svc.queue, svc.store, consumer)
        self.notifier = Notifier.from_settings(svc.settings, svc.store)
        self._threads: list[threading.Thread] = []

    def start(self, stop: threading.Event) -> None:
        """Run both loops until ``stop`` is set."""
        for name, loop in (
            ("dtq-recorder", self.recorder.run),
            ("dtq-notifier", self.notifier.run),
        ):
            thread = threading.Thread(target=loop, args=(stop,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        """Wait for both loops (``stop`` must be set), then close the notifier's client."""
        for thread in self._threads:
            thread.join(timeout_s)
        self.notifier.close()
