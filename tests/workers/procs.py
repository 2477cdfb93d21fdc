"""Helpers for worker tests: real processes, a cuttable TCP proxy, reading the record."""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

from chalicelib.core.settings import Settings

DTQ = str(Path(sys.executable).with_name("dtq"))
ROOT = Path(__file__).resolve().parents[2]


def worker_env(settings: Settings, redis_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTQ_")}
    env.update(
        {
            "DTQ_REDIS_URL": redis_url or settings.redis_url,
            "DTQ_DATABASE_URL": settings.database_url,
            "DTQ_KEY_PREFIX": settings.key_prefix,
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


class Proxy:
    """A TCP proxy the test can cut (every connection dropped, new ones refused) and
    restore, to take a worker offline without touching the server."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()
