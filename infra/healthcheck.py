"""Container health check for every DTQ role (the image's HEALTHCHECK runs this).

The image is shared by all roles, so the check finds the ``dtq <verb>`` process in the
container (PID 1, or the child of an init such as ``docker run --init``) and checks it
according to its verb:

* ``api``: ``GET http://127.0.0.1:<--port>/health`` must answer 200 (port 8000 unless
  ``--port`` says otherwise).
* ``worker``: the process exists and is neither a zombie nor stopped. Redis is
  deliberately not checked: an offline-first worker keeps processing and journaling what
  it holds while Redis or the API are unreachable, and must not be reported unhealthy
  (and recycled by an orchestrator) for a network loss it is built to survive.
* ``scheduler``: the process is alive and Redis (``DTQ_REDIS_URL``) answers PING; a
  scheduler that cannot reach Redis fires nothing.
* anything else (``migrate``, one-shot verbs): healthy while it runs.

Exit status 0 when healthy, 1 otherwise, with a one-line reason on stdout (shown by
``docker inspect``). Standard library only, plus ``redis`` for the scheduler.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_SECONDS = 3.0
DEFAULT_PORT = 8000
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def find_dtq() -> tuple[int, list[str]] | None:
    """The lowest-pid ``dtq`` process as (pid, argv after ``dtq``), or None."""
    me = os.getpid()
    found: list[tuple[int, list[str]]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        args = dtq_args([a.decode(errors="replace") for a in raw.split(b"\0") if a])
        if args is not None:
            found.append((int(entry.name), args))
    return min(found) if found else None


def dtq_args(argv: list[str]) -> list[str] | None:
    """The arguments after ``dtq`` if this process *is* dtq, else None.

    ``dtq ...``, ``python /opt/venv/bin/dtq ...`` and ``python -m dtq._impl.workers.cli
    ...`` (``workers.cli`` in a checkout) are; an init that merely launched it
    (``docker-init -- dtq worker``) is not.
    """
    if not argv:
        return None
    if os.path.basename(argv[0]) == "dtq":
        return argv[1:]
    if not os.path.basename(argv[0]).startswith("python"):
        return None
    rest = [a for a in argv[1:] if a not in ("-u", "-O", "-OO", "-B", "-E", "-s", "-I")]
    if rest and os.path.basename(rest[0]) == "dtq":
        return rest[1:]
    if rest[:1] == ["-m"] and rest[1:2] in (["dtq._impl.workers.cli"], ["workers.cli"]):
        return rest[2:]
    return None


def process_state(pid: int) -> str:
    """One-letter state from /proc/<pid>/stat (R, S, D, Z, T, ...); '?' if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    # The command name is parenthesised and may hold spaces; the state follows it.
    return stat.rsplit(")", 1)[-1].split()[0]


def option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def check_api(args: list[str]) -> str | None:
    port = option(args, "--port") or str(DEFAULT_PORT)
    host = option(args, "--host") or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    return None if status == 200 else f"{url} answered {status}"


def check_redis() -> str | None:
    url = os.environ.get("DTQ_REDIS_URL") or DEFAULT_REDIS_URL
    try:
        import redis

        client = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure to reach Redis is "unhealthy"
        return f"redis: {type(exc).__name__}: {exc}"
    return None


def main() -> int:
    found = find_dtq()
    if found is None:
        print("unhealthy: no dtq process running")
        return 1
    pid, args = found
    verb = next((a for a in args if not a.startswith("-")), "")
    state = process_state(pid)
    if state in ("?", "Z", "X", "x", "T", "t"):
        print(f"unhealthy: dtq {verb} (pid {pid}) is in state {state}")
        return 1
    problem: str | None = None
    if verb == "api":
        problem = check_api(args)
    elif verb == "scheduler":
        problem = check_redis()
    if problem:
        print(f"unhealthy: dtq {verb}: {problem}")
        return 1
    print(f"healthy: dtq {verb} (pid {pid}, state {state})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
