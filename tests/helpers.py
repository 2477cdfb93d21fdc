"""Helpers shared by the tests."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The project's own free-port finder (dtq dev uses it for its embedded servers).
from workers.devstack.embedded import free_port

__all__ = ["alive", "children", "free_port", "http_json", "port_answers", "processes", "wait_until"]


def wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0, what: str = "") -> Any:
    """Poll a condition on real state (never a blind sleep); fail after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.005)


def http_json(
    method: str, url: str, body: Any = None, token: str | None = None, timeout_s: float = 10.0
) -> tuple[int, Any]:
    """One JSON request as a client would send it: (status, decoded body); (0, None) when
    nothing answers."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError:
        return 0, None


def port_answers(port: int) -> bool:
    """Something accepts TCP connections on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, command line, start time) of every live, non-zombie process
    (read from /proc: no psutil here)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if stat[0] != "Z":
            found[int(entry)] = (int(stat[1]), cmdline, stat[19])
    return found


def children(pid: int) -> dict[int, str]:
    """Live child processes of ``pid``: pid -> command line."""
    return {p: cmd for p, (parent, cmd, _) in processes().items() if parent == pid}


def alive(pid: int) -> bool:
    """Running, and not a zombie (an orphan is reaped by whoever adopted it, maybe late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
