"""``dtq dev``: the whole stack on one machine, in one terminal.

Redis and PostgreSQL: those configured (DTQ_REDIS_URL / DTQ_DATABASE_URL), else
those answering on the defaults, else embedded ones with their data under the state
directory (<project>/.dtq), on free ports; --embedded always uses the embedded ones,
and so does a run that finds embedded data there. Then migrations and the dev users,
a moto server as the local AWS endpoint, the API, the scheduler (when this checkout
has one) and N workers, each a child process whose output is prefixed with its name.

Generated once and kept in the state directory: ``credentials`` (the admin and worker
passwords and the JWT secret, mode 0600; the environment's own values win), worker
journals, the embedded servers' data (Redis with AOF everysec, so queued tasks survive
a restart). While running, ``env`` there holds the URLs for a second shell.

Restart policy: a worker or the scheduler that dies is restarted after 1 s, doubling
to 30 s while it keeps dying within a minute. Redis, PostgreSQL, the AWS endpoint or
the API dying stops the whole stack with exit status 1: nothing useful runs without
them, and a loud stop beats a half-working stack. Ctrl-C / SIGTERM stops the app, then
the AWS endpoint, then the data servers (each: signal, grace, SIGKILL) and exits 0; a
second Ctrl-C kills at once.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from chalicelib.core.errors import DTQError
from chalicelib.core.settings import Settings
from workers.children import Child, Output, Supervisor, describe_exit, stop_leftovers
from workers.devstack import embedded, localaws

#: The checkout this module runs from (an editable install), else the working directory.
_HERE = Path(__file__).resolve().parents[2]
PROJECT = _HERE if (_HERE / "pyproject.toml").is_file() else Path.cwd()

STARTUP_TIMEOUT_S = 60.0
WORKER_GRACE_S = 10.0
_CREDENTIALS = (
    ("DTQ_ADMIN_PASSWORD", 18),
    ("DTQ_WORKER_PASSWORD", 18),
    ("DTQ_JWT_SECRET", 48),
)


class _Interrupted(Exception):
    """Ctrl-C during startup."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "dev",
        help="run the whole stack locally (embedded Redis/PostgreSQL when needed)",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workers", type=int, default=2, metavar="N", help="workers (default 2)")
    p.add_argument(
        "--port",
        type=int,
        default=8000,
        metavar="P",
        help="API port (default 8000; 0 picks a free one)",
    )
    p.add_argument(
        "--embedded",
        action="store_true",
        help="embedded Redis and PostgreSQL even when others answer",
    )
    p.add_argument(
        "--state-dir",
        default=None,
        metavar="DIR",
        help="data, credentials and journals (default: <project>/.dtq)",
    )
    p.add_argument("--no-aws", action="store_true", help="do not start the local AWS endpoint")
    p.set_defaults(func=cmd_dev)


def cmd_dev(args: argparse.Namespace) -> int:
    if args.workers < 0:
        raise DTQError("--workers: must be 0 or more")
    if not 0 <= args.port <= 65535:
        raise DTQError("--port: must be 0-65535")
    state = Path(args.state_dir or PROJECT / ".dtq").resolve()
    if not state.exists():
        state.parent.mkdir(parents=True, exist_ok=True)
        # Search-only for others: the unprivileged PostgreSQL user must reach its data.
        state.mkdir(mode=0o711)
    output = Output()
    output.width = max(len("scheduler"), len(f"worker-{args.workers}"))
    with _lock(state):
        stop_leftovers(state / "dev.pids", lambda m: output.line("dev", m))
        stack = Stack(args, state, output)
        stack.install_signals()
        return stack.run()


class _lock:
    """One ``dtq dev`` per state directory (a second one would fight over the data)."""

    def __init__(self, state: Path) -> None:
        self.path = state / "dev.lock"

    def __enter__(self) -> None:
        self.file = open(self.path, "a+")  # held until __exit__
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "?"
            self.file.close()
            message = f"another dtq dev (pid {holder}) is running with {self.path.parent}"
            raise DTQError(message) from None
        self.file.truncate(0)
        self.file.write(str(os.getpid()))
        self.file.flush()

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def load_credentials(path: Path) -> dict[str, str]:
    """The dev passwords and JWT secret, generated on first use and kept (0600)."""
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
    missing = [(k, n) for k, n in _CREDENTIALS if not values.get(k)]
    if missing:
        values.update({k: secrets.token_urlsafe(n) for k, n in missing})
        text = "# dtq dev credentials, generated once; delete this file for new ones\n"
        text += "".join(f"{k}={v}\n" for k, v in values.items())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    return values


def _http_json(url: str, timeout_s: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return int(exc.code), None
    except (OSError, ValueError):
        return 0, None


class Stack:
    def __init__(self, args: argparse.Namespace, state: Path, output: Output) -> None:
        self.args = args
        self.state = state
        self.out = output
        self.sup = Supervisor(output, state / "dev.pids", PROJECT)
        self.stop = threading.Event()
        self.env: dict[str, str] = dict(os.environ, PYTHONUNBUFFERED="1")
        self.info: list[tuple[str, str]] = []
        self.api_url = ""
        self.aws_child: Child | None = None
        self.dtq = [str(Path(sys.executable).with_name("dtq"))]
        if not Path(self.dtq[0]).exists():
            # workers.cli, under whatever name this package has (a wheel's: setup.py).
            self.dtq = [sys.executable, "-m", __name__.removesuffix("devstack.stack") + "cli"]

    def say(self, text: str) -> None:
        self.out.line("dev", text)

    def install_signals(self) -> None:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self.stop.is_set():
                self.sup.hurry.set()
                self.say("second signal: killing everything now")
                return
            self.stop.set()
            self.say(f"{signal.Signals(signum).name}: stopping (again to kill at once)")

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    def run(self) -> int:
        try:
            try:
                self.start()
            except _Interrupted:
                return 0
            self.summary()
            return self.watch()
        finally:
            self.say("stopping")
            self.sup.stop_all()
            (self.state / "env").unlink(missing_ok=True)
            self.say("stopped")

    # -- startup ----------------------------------------------------------------------

    def wait_for(self, what: str, ready: Callable[[], bool], *children: Child) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not ready():
            if self.stop.is_set():
                raise _Interrupted
            for child in children:
                if child.proc is not None and child.proc.poll() is not None:
                    how = describe_exit(child.proc.returncode)
                    raise DTQError(
                        f"{child.name} stopped while starting ({how}; see its output above)"
                    )
            if time.monotonic() > deadline:
                raise DTQError(f"{what} was not ready after {STARTUP_TIMEOUT_S:g} s")
            self.stop.wait(0.1)

    def start(self) -> None:
        self.data_services()
        self.env.update(load_credentials(self.state / "credentials"))
        for key, _ in _CREDENTIALS:  # the environment's own values win
            if os.environ.get(key):
                self.env[key] = os.environ[key]
        if os.environ.get("DTQ_JWT_SECRET_ID") and not os.environ.get("DTQ_JWT_SECRET"):
            del self.env["DTQ_JWT_SECRET"]
        moto = self.start_aws()
        self.migrate()
        if moto is not None:
            self.create_aws_resources(moto)
        self.start_api()
        self.start_app_processes()

    def data_services(self) -> None:
        self.data_service(
            "redis",
            "DTQ_REDIS_URL",
            Settings.redis_url,
            embedded.redis_answers,
            embedded.redis_server,
        )
        self.data_service(
            "postgres",
            "DTQ_DATABASE_URL",
            Settings.database_url,
            embedded.postgres_answers,
            embedded.postgres_server,
        )

    def data_service(
        self,
        name: str,
        var: str,
        default: str,
        answers: Callable[[str], bool],
        make: Callable[[Path, int, list[str]], embedded.Server],
    ) -> None:
        """Use the configured server, else one answering on the default, else (or with
        --embedded) start an embedded one."""
        # Whether the variable is set at all, not just its value: a configured server
        # that does not answer is an error, the default one is merely absent.
        configured = os.environ.get(var)
        if configured and self.args.embedded:
            self.say(f"--embedded: ignoring {var}")
        # Once embedded data exists, keep using it: switching to a server that appeared
        # on the default port since would hide the queued tasks.
        reuse = not configured and embedded.has_data(self.state, name)
        if not self.args.embedded and not reuse:
            url = configured or default
            if answers(url):
                self.env[var] = url
                how = "configured" if configured else "answering on the default"
                self.info.append((name, f"{_safe(url)} ({how})"))
                return
            if configured:
                raise DTQError(
                    f"{var}: nothing answers there (unset it, or pass --embedded, "
                    "to run an embedded server)"
                )
        notes: list[str] = []
        server = make(self.state, embedded.free_port(), notes)
        for note in notes:
            self.say(note)
        stop_signal = signal.SIGINT if name == "postgres" else signal.SIGTERM
        child = self.sup.start(
            Child(
                server.name,
                server.argv,
                dict(self.env),
                tier=0,
                stop_signal=stop_signal,
                grace_s=15.0,
                uid=server.uid,
                gid=server.gid,
            )
        )
        self.wait_for(name, lambda: answers(server.url), child)
        self.env[var] = server.url
        self.info.append((name, f"{server.url} (embedded {server.origin}; data in {self.state})"))

    def migrate(self) -> None:
        from chalicelib.record import migrate

        applied = migrate.migrate(Settings.from_env(self.env))
        self.say(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")

    def start_aws(self) -> str | None:
        if os.environ.get("AWS_ENDPOINT_URL"):
            self.info.append(("aws", f"{os.environ['AWS_ENDPOINT_URL']} (configured)"))
            return None
        if self.args.no_aws or not localaws.available():
            why = "--no-aws" if self.args.no_aws else "moto is not installed"
            self.info.append(("aws", f"no local AWS endpoint ({why})"))
            return None
        port = embedded.free_port()
        argv = localaws.server_argv(port)
        self.aws_child = self.sup.start(Child("aws", argv, dict(self.env), tier=1, grace_s=5.0))
        url = f"http://127.0.0.1:{port}"
        self.env.update(localaws.ENV, AWS_ENDPOINT_URL=url)
        return url

    def create_aws_resources(self, url: str) -> None:
        assert self.aws_child is not None
        ready = url + localaws.ready_path()
        self.wait_for("the AWS endpoint", lambda: _http_json(ready)[0] == 200, self.aws_child)
        topic = localaws.create_resources(url)
        self.env.setdefault("DTQ_NOTIFY_TOPIC_ARN", topic)
        self.info.append(
            ("aws", f"{url} (moto, in memory: bucket {localaws.BUCKET}, topic {topic})")
        )

    def start_api(self) -> None:
        port = self.args.port or embedded.free_port()
        if not embedded.port_is_free("127.0.0.1", port):
            raise DTQError(
                f"--port {port}: already in use (another dtq dev or dtq api?); "
                "choose another with --port"
            )
        self.api_url = f"http://127.0.0.1:{port}"
        api = self.sup.start(
            Child("api", [*self.dtq, "api", "--port", str(port)], dict(self.env), tier=2)
        )
        self.wait_for("the API", lambda: _http_json(self.api_url + "/health")[0] == 200, api)

    def start_app_processes(self) -> None:
        self.sup.start(
            Child("scheduler", [*self.dtq, "scheduler"], dict(self.env), tier=2, restart=True)
        )
        self.info.append(("scheduler", "running (dtq scheduler)"))
        since_ms = int(time.time() * 1000) - 1000  # heartbeats use the Redis clock
        workers = []
        for i in range(1, self.args.workers + 1):
            # A journal each (a worker locks its own; a second one on it would refuse to
            # start); worker-i restarted after a crash takes its predecessor's and syncs it.
            argv = [
                *self.dtq,
                "worker",
                "--offline-db",
                str(self.state / f"journal-worker-{i}.db"),
                "--grace-seconds",
                str(WORKER_GRACE_S),
            ]
            child = Child(
                f"worker-{i}",
                argv,
                dict(self.env),
                tier=2,
                restart=True,
                grace_s=WORKER_GRACE_S + 5,
            )
            workers.append(self.sup.start(child))
        self.wait_for("the workers", lambda: self.workers_seen(since_ms) >= len(workers), *workers)
        self.info.append(("workers", f"{self.args.workers} (queue default, Redis mode)"))

    def workers_seen(self, since_ms: int) -> int:
        """Workers whose heartbeat is newer than ``since_ms``: they are up."""
        import redis

        from chalicelib.queue.keys import Keys

        settings = Settings.from_env(self.env)
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
        try:
            return int(client.zcount(Keys(settings.key_prefix).workers, since_ms, "+inf"))
        except redis.RedisError:
            return 0
        finally:
            client.close()

    # -- running ----------------------------------------------------------------------

    def summary(self) -> None:
        settings = Settings.from_env(self.env)
        _, spec = _http_json(self.api_url + "/openapi.json")
        paths = spec.get("paths", {}) if isinstance(spec, dict) else {}
        dashboards = ["/dashboard"] if "/dashboard" in paths else []
        env_file = self.state / "env"
        keep = (
            "DTQ_REDIS_URL",
            "DTQ_DATABASE_URL",
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
            "DTQ_NOTIFY_TOPIC_ARN",
        )
        env_file.write_text("".join(f"{k}={self.env[k]}\n" for k in keep if k in self.env))
        rows = [
            ("API", self.api_url),
            ("health", f"{self.api_url}/health"),
            ("metrics", f"{self.api_url}/metrics"),
            ("API docs", f"{self.api_url}/openapi.json"),
            (
                "dashboard",
                f"{self.api_url}{dashboards[0]}"
                if dashboards
                else "none (this API serves no /dashboard)",
            ),
            ("admin", f"{settings.admin_username} / {settings.admin_password} (dashboard too)"),
            ("worker", f"{settings.worker_username} / {settings.worker_password}"),
            ("", f"(kept in {self.state / 'credentials'})"),
            *self.info,
            ("2nd shell", f"set -a; . {env_file}; set +a; dtq status"),
        ]
        bar = "─" * 60
        lines = [bar, "DTQ is up. Ctrl-C stops everything.", bar]
        lines += [f"{k:<10} {v}" for k, v in rows] + [bar]
        self.out.block("dev", lines)

    def watch(self) -> int:
        while not self.stop.wait(0.2):
            now = time.monotonic()
            for child in self.sup.dead():
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        child.restart_at = None
                        self.sup.restart(child)
                    continue
                how = describe_exit(child.proc.returncode if child.proc else None)
                if not child.restart:
                    self.say(
                        f"{child.name} stopped unexpectedly ({how}); "
                        "stopping the stack (see its output above)"
                    )
                    return 1
                if now - child.started_at > 60:
                    child.restarts = 0
                delay = min(30.0, 2.0**child.restarts)
                self.say(f"{child.name} stopped unexpectedly ({how}); restarting it in {delay:g} s")
                child.restart_at = now + delay
        return 0


def _safe(url: str) -> str:
    """A URL without its password, for printing."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url
