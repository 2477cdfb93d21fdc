"""The fault suite's harness: its own Redis and PostgreSQL, real ``dtq`` processes, and
ways to hurt each of them.

A :class:`Cluster` owns:

- a ``redis-server`` with AOF on (``appendfsync everysec``, ``noeviction``: the
  configuration ``workers/devstack/embedded.py`` writes for ``dtq dev``) in its own directory, on a
  free port;
- a PostgreSQL cluster (``initdb`` + ``postgres``, as the unprivileged user
  ``workers/devstack/embedded.py`` picks when we are root) in its own directory, on a free port;
- every ``dtq`` process a scenario starts (:meth:`Cluster.spawn` and the helpers for
  ``api``, ``worker``, ``scheduler``, ``record``, ``recover``, ``migrate``), each with its
  output in a log file, in its own session (process group) so that killing it kills
  whatever it started.

Servers and processes are :class:`Proc` objects: ``kill()`` (SIGKILL), ``pause()`` /
``resume()`` (SIGSTOP / SIGCONT), ``terminate()``; servers also ``restart()`` on the same
port and data. Every process gets ``PR_SET_PDEATHSIG``, so even a pytest killed outright
takes them along, and :meth:`Cluster.close` kills whatever is left (process groups, paused
ones resumed first). :meth:`Cluster.describe` gives every process's state and log tail
for failure messages.

Waiting is on conditions with deadlines (:func:`wait_for`), never on sleeps.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import redis

from chalicelib.queue.keys import Keys
from tests.faults import checker
from tests.faults.checker import FINAL, Report, ReportBook, Run
from tests.faults.fault_tasks import RUNLOG_VAR
from tests.helpers import alive, http_json
from workers.devstack import embedded

ROOT = Path(__file__).resolve().parents[2]
DTQ = str(Path(sys.executable).with_name("dtq"))
TASKS_MODULE = "tests.faults.fault_tasks"
PREFIX = "dtq"
#: A short backoff after a lost lease, so a retried task runs again within the scenario.
FAST_BACKOFF = {"base_seconds": 0.05, "factor": 1.0, "max_seconds": 0.05, "jitter": False}
#: Interval between polls of a condition: the conditions query servers, and two cores
#: are shared with the processes under test.
POLL_S = 0.05

#: Worker log messages (workers/worker.py): it lost the server, and found it again.
OFFLINE = "offline (journaling outcomes, not claiming)"
BACK_ONLINE = "back online; journal synced"
#: What a server that lost the race for its port says (Redis, PostgreSQL, Python).
PORT_TAKEN = "Address already in use"
#: The harness's line in a process's log at each start of it.
START_MARK = "--- harness: start at "

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout_s: float,
    what: str,
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something true, and return that; after the
    deadline fail, saying what was awaited (and ``describe()``: the processes' logs)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{describe()}" if describe is not None else ""
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{extra}")
        time.sleep(POLL_S)


#: Looked up once here: the child must not dlopen between fork and exec while other
#: threads of pytest (a scenario's request thread) may hold the loader's lock.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec (after any setuid, which would clear it):
    # SIGKILL this process when the pytest process dies, however it dies.
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _thread_states(pid: int) -> list[str]:
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        except OSError:
            continue  # a thread that just ended
    return states


class Proc:
    """One process of the cluster: started in its own session, output to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        env: dict[str, str],
        cwd: Path,
        uid: int | None = None,
        gid: int | None = None,
        start: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = env
        self.cwd = cwd
        self.uid = uid
        self.gid = gid
        self.popen: subprocess.Popen[bytes] | None = None
        self.paused = False
        #: what the harness did to it, for describe(): "killed", "terminated", …
        self.fate = ""
        if start:
            self.start()

    def start(self) -> None:
        """Start (or start again, appending to the same log)."""
        with open(self.log, "ab") as out:
            out.write(f"{START_MARK}{time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd="/" if self.uid is not None else self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                user=self.uid,
                group=self.gid,
                extra_groups=[] if self.uid is not None else None,
            )
        self.paused = False
        self.fate = ""

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def kill(self, *, group: bool = False) -> None:
        """SIGKILL the process (``group``: and everything in its process group), and reap
        it. Its own children are not killed unless ``group``: a worker's recorder child
        must notice its parent's death by itself."""
        if self.alive():
            if group:
                self._signal_group(signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
            assert self.popen is not None
            self.popen.wait(10)
        self.fate = "killed"
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the process stops where it is (a long GC pause, a VM freeze). Returns
        once every thread is stopped: the signal is only queued when kill() returns."""
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True
        self.fate = "paused"
        wait_for(
            lambda: all(s == "T" for s in _thread_states(self.pid)), 10, f"{self.name} to stop"
        )

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False
        self.fate = "resumed"

    def terminate(self, timeout_s: float = 15.0) -> int:
        """SIGTERM and wait; SIGKILL (the whole group) if it does not exit in time."""
        if self.alive():
            if self.paused:
                self.resume()
            self.popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            try:
                self.popen.wait(timeout_s)  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(10)  # type: ignore[union-attr]
        self.fate = self.fate or "terminated"
        return self.popen.returncode  # type: ignore[union-attr]

    def wait(self, timeout_s: float) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout_s)

    def cleanup(self) -> None:
        """Whatever state it is in: nothing of its process group is left running."""
        if self.popen is None:
            return
        self._signal_group(signal.SIGKILL)  # ends stopped (SIGSTOP) processes too
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def _log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def text(self) -> str:
        """What the process wrote (every start of it), without the harness's own lines:
        those name the command line, whose words (``--offline-db``…) a test looking for
        a log message must not find."""
        return "".join(
            line
            for line in self._log().splitlines(keepends=True)
            if not line.startswith(START_MARK)
        )

    def last_start_text(self) -> str:
        """What it wrote since it was last started."""
        return self._log().rsplit(START_MARK, 1)[-1]

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self._log().splitlines()[-lines:])

    def describe(self) -> str:
        code = self.returncode()
        state = "running" if code is None else f"exited {code}"
        if self.popen is None:
            state = "not started"
        if self.paused:
            state = "paused"
        fate = f", {self.fate}" if self.fate else ""
        pid = self.popen.pid if self.popen is not None else "-"
        return f"== {self.name} (pid {pid}, {state}{fate}) log {self.log}:\n{self.tail()}"


def wait_until_ready(proc: Proc, ready: Callable[[], bool], timeout_s: float) -> None:
    """``ready()``, or fail at once (with its log) if the process exits meanwhile."""
    wait_for(
        lambda: ready() or not proc.alive(), timeout_s, f"{proc.name} to answer", proc.describe
    )
    if not proc.alive():
        raise AssertionError(f"{proc.name} exited at start\n{proc.describe()}")


def start_on_free_port(
    proc: Proc, place: Callable[[int], None], ready: Callable[[], bool], timeout_s: float
) -> None:
    """Start ``proc`` on a port nobody listens on: ``place(port)`` puts the port in its
    command line (and wherever clients look). Another process may take the port between
    our pick and the server's bind (parallel test sessions pick ports too): that start
    fails with "Address already in use", and another port is picked."""
    for _ in range(5):
        place(embedded.free_port())
        proc.start()
        try:
            wait_until_ready(proc, ready, timeout_s)
            return
        except AssertionError:
            if proc.alive() or PORT_TAKEN not in proc.last_start_text():
                raise
    raise AssertionError(f"{proc.name}: no free port in 5 tries\n{proc.describe()}")


def _with_port(argv: list[str], flag: str, port: int) -> list[str]:
    out = list(argv)
    out[out.index(flag) + 1] = str(port)
    return out


class RedisServer:
    """``redis-server`` with the AOF configuration of ``dtq dev`` (workers/devstack/embedded.py)."""

    def __init__(self, home: Path, logs: Path) -> None:
        server = embedded.redis_server(home, 0, [])
        self.dir = home / "redis"
        self.port = 0
        self.url = ""
        self.proc = Proc(
            "redis",
            server.argv,
            logs / "redis.log",
            env=dict(os.environ),
            cwd=self.dir,
            start=False,
        )

        def place(port: int) -> None:
            self.port, self.url = port, f"redis://127.0.0.1:{port}/0"
            self.proc.argv = _with_port(server.argv, "--port", port)

        start_on_free_port(self.proc, place, self.ready, 20.0)

    def ready(self) -> bool:
        """Answers PING (not while it loads its AOF)."""
        return self.proc.alive() and embedded.redis_answers(self.url)

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        wait_until_ready(self.proc, self.ready, timeout_s)

    def kill(self) -> None:
        self.proc.kill()

    def restart(self) -> None:
        """Start again on the same port and data (it replays its AOF)."""
        assert not self.proc.alive(), "restart() a server that was killed"
        self.proc.start()
        self.wait_ready()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)


class PostgresServer:
    """A PostgreSQL cluster of our own (``initdb`` once, then ``postgres``)."""

    def __init__(self, home: Path, logs: Path) -> None:
        server = embedded.postgres_server(home, 0, [])  # initdb; the port is picked after
        self.port = 0
        self.base_url = ""
        self.proc = Proc(
            "postgres",
            server.argv,
            logs / "postgres.log",
            env=dict(os.environ),
            cwd=home,
            uid=server.uid,
            gid=server.gid,
            start=False,
        )

        def place(port: int) -> None:
            self.port, self.base_url = port, f"postgresql://postgres@127.0.0.1:{port}"
            self.proc.argv = _with_port(server.argv, "-p", port)

        start_on_free_port(self.proc, place, self.ready, 30.0)

    def url(self, database: str) -> str:
        return f"{self.base_url}/{database}"

    def ready(self) -> bool:
        return self.proc.alive() and embedded.postgres_answers(self.url("postgres"))

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        wait_until_ready(self.proc, self.ready, timeout_s)

    def kill(self) -> None:
        """kill -9 of the postmaster and its backends (the whole process group), as a
        crash of the server: the next start runs crash recovery."""
        self.proc.kill(group=True)

    def restart(self) -> None:
        assert not self.proc.alive(), "restart() a server that was killed"
        self.proc.start()
        self.wait_ready()


class Api:
    """A ``dtq api`` process on a fixed port (so it can come back where workers look)."""

    def __init__(self, cluster: Cluster, name: str = "api", port: int | None = None) -> None:
        self.cluster = cluster
        self.port = port or 0
        self.url = ""
        self.proc = cluster.spawn(name, "api", "--port", str(self.port), start=False)

        def place(port: int) -> None:
            self.port, self.url = port, f"http://127.0.0.1:{port}"
            self.proc.argv = _with_port(self.proc.argv, "--port", port)

        if port is None:
            start_on_free_port(self.proc, place, self.answers, 30.0)
        else:  # the caller wants this port: no other will do
            place(port)
            self.proc.start()
            self.wait_ready()
        self.token = self.login()

    def answers(self) -> bool:
        # Any answer will do: /health says 503 while a server is down, and that is a
        # state scenarios start the API in on purpose.
        return http_json("GET", self.url + "/health", timeout_s=2)[0] != 0

    def wait_ready(self) -> None:
        wait_until_ready(self.proc, self.answers, 30.0)

    def login(self) -> str:
        status, body = http_json(
            "POST",
            self.url + "/auth/login",
            {"username": "admin", "password": self.cluster.admin_password},
        )
        assert status == 200, (status, body)
        return str(body["access_token"])

    def call(
        self, method: str, path: str, body: Any = None, timeout_s: float = 10.0
    ) -> tuple[int, Any]:
        """One request as the admin: (status, decoded body); (0, None) when nothing answers."""
        return http_json(method, self.url + path, body, self.token, timeout_s)

    def enqueue_batch(self, bodies: Sequence[dict[str, Any]]) -> list[str]:
        """POST /tasks/batch in chunks of 1,000; every chunk must be accepted."""
        ids: list[str] = []
        for i in range(0, len(bodies), 1000):
            status, reply = self.call("POST", "/tasks/batch", {"tasks": list(bodies[i : i + 1000])})
            assert status == 201, (status, reply)
            ids += [t["id"] for t in reply["tasks"]]
        return ids

    def kill(self) -> None:
        self.proc.kill(group=True)

    def restart(self) -> None:
        """Start again on the same port."""
        assert not self.proc.alive(), "restart() an API that was killed"
        self.proc.start()
        self.wait_ready()


def task(sleep_s: float = 0.0, **fields: Any) -> dict[str, Any]:
    """A ``fault.run`` task body: it runs ``sleep_s`` seconds; enough attempts that lease
    losses do not kill it, and a short backoff so that a lost lease is retried at once."""
    body: dict[str, Any] = {
        "name": "fault.run",
        "payload": {"sleep": sleep_s},
        "max_attempts": 20,
        "backoff": FAST_BACKOFF,
    }
    body.update(fields)
    return body


class Cluster:
    """One scenario's servers and processes (see the module's docstring)."""

    def __init__(self, name: str, logs: Path, book: ReportBook | None = None) -> None:
        self.name = name
        self.logs = logs
        self.book = book
        logs.mkdir(parents=True, exist_ok=True)
        # Server data lives outside pytest's temporary tree: PostgreSQL runs as another
        # user who must traverse the path, and pytest resets its base directory to 0700.
        self.home = Path(tempfile.mkdtemp(prefix="dtq-faults-"))
        self.home.chmod(0o711)
        self.procs: list[Proc] = []
        #: what check() found, in order
        self.reports: list[Report] = []
        self.runlog = logs / "runs.log"
        self.admin_password = "admin-password-faults"
        self.worker_password = "worker-password-faults"
        self.keys = Keys(PREFIX)
        #: the servers' processes, for close() even when one of them failed to start
        self._servers: list[Proc] = []
        try:
            self.redis = RedisServer(self.home, logs)
            self._servers.append(self.redis.proc)
            self.postgres = PostgresServer(self.home, logs)
            self._servers.append(self.postgres.proc)
            self.database_url = self.postgres.url("dtq")
            self.run("migrate", "migrate")
        except BaseException:
            self.close()
            raise

    # -- processes ---------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a ``dtq`` process of this cluster (chalicelib/core/settings.py)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DTQ_")}
        env.update(
            {
                "DTQ_REDIS_URL": self.redis.url,
                "DTQ_DATABASE_URL": self.database_url,
                "DTQ_KEY_PREFIX": PREFIX,
                "DTQ_JWT_SECRET": "faults-jwt-secret-" + "x" * 32,
                "DTQ_ADMIN_PASSWORD": self.admin_password,
                "DTQ_WORKER_PASSWORD": self.worker_password,
                "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1",
                RUNLOG_VAR: str(self.runlog),
            }
        )
        env.update(extra)
        return env

    def spawn(
        self, name: str, *args: str, env: dict[str, str] | None = None, start: bool = True
    ) -> Proc:
        """Start ``dtq <args>``, its output in ``<logs>/<name>.log`` (``start=False``: the
        caller starts it)."""
        if any(p.name == name for p in self.procs):
            raise ValueError(f"a process named {name!r} exists already")
        proc = Proc(
            name,
            [DTQ, *args],
            self.logs / f"{name}.log",
            env=self.env(**(env or {})),
            cwd=self.logs,
            start=start,
        )
        self.procs.append(proc)
        return proc

    def run(self, name: str, *args: str, timeout_s: float = 60.0) -> str:
        """Run ``dtq <args>`` to completion; it must exit 0. Returns its output."""
        proc = self.spawn(name, *args)
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"dtq {' '.join(args)} still running after {timeout_s} s\n{proc.describe()}"
            ) from None
        assert code == 0, f"dtq {' '.join(args)} exited {code}\n{proc.describe()}"
        return proc.text()

    def api(self, name: str = "api", port: int | None = None) -> Api:
        return Api(self, name, port)

    def worker(
        self,
        name: str,
        *args: str,
        api: Api | None = None,
        concurrency: int = 4,
        lease_seconds: float = 2.0,
        queues: str = "default",
        journal: Path | None = None,
        wait: bool = True,
    ) -> Proc:
        """``dtq worker`` with the suite's handlers, worker id ``name`` and its own journal
        (``journal`` to share one); ``api``: HTTP mode. Returns once it registered."""
        argv = [
            "worker",
            "--tasks",
            TASKS_MODULE,
            "--queues",
            queues,
            "--concurrency",
            str(concurrency),
            "--lease-seconds",
            str(lease_seconds),
            "--worker-id",
            name,
            "--offline-db",
            str(journal or self.logs / f"{name}.journal.db"),
            *args,
        ]
        if api is not None:
            argv += ["--api", api.url]
        proc = self.spawn(name, *argv)
        if wait:
            wait_for(
                lambda: self._registered(name) or not proc.alive(),
                30,
                f"worker {name} to register",
                self.describe,
            )
            assert proc.alive(), proc.describe()
        return proc

    def _registered(self, worker_id: str) -> bool:
        with self._redis() as r:
            return r.zscore(self.keys.workers, worker_id) is not None

    def scheduler(self, name: str, *args: str) -> Proc:
        return self.spawn(name, "scheduler", *args)

    def record(self, name: str = "record") -> Proc:
        return self.spawn(name, "record")

    def recover(self, name: str = "recover") -> str:
        return self.run(name, "recover")

    # -- reading the servers -----------------------------------------------------------

    def _redis(self) -> redis.Redis:
        return self.redis.client()

    def pg(self) -> psycopg.Connection[Any]:
        """A fresh connection to the cluster's database (autocommit, dict rows): fresh
        because the server may have been killed since the last one."""
        from psycopg.rows import dict_row

        return psycopg.connect(
            self.database_url, autocommit=True, connect_timeout=5, row_factory=dict_row
        )

    def statuses(self, ids: Iterable[str]) -> dict[str, str]:
        """The recorded status of each id that has a row."""
        with self.pg() as conn:
            rows = conn.execute(
                "SELECT id::text AS id, status FROM dtq_tasks WHERE id = ANY(%s::uuid[])",
                (list(ids),),
            ).fetchall()
        return {r["id"]: r["status"] for r in rows}

    def final_count(self, ids: Sequence[str]) -> int:
        return sum(1 for s in self.statuses(ids).values() if s in FINAL)

    def runs(self) -> list[Run]:
        return checker.read_runs(self.runlog)

    def unrecorded(self) -> int:
        """Stream entries not yet in the record, over every known queue."""
        with self._redis() as r:
            queues = [q.decode() for q in r.smembers(self.keys.queues)]
            return sum(int(r.xlen(self.keys.queue(q).events)) for q in queues)

    def live(self, queue: str, task_id: str) -> dict[str, str]:
        """The task's hash in Redis."""
        with self._redis() as r:
            raw = r.hgetall(self.keys.queue(queue).task(task_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def depths(self, queue: str = "default") -> dict[str, int]:
        qk = self.keys.queue(queue)
        with self._redis() as r:
            return {
                name: int(r.zcard(getattr(qk, name)))
                for name in ("ready", "scheduled", "retrying", "running", "dead")
            }

    def leases_expired(self, queue: str = "default") -> bool:
        """Every lease in the queue's running set is past its deadline (Redis's clock)."""
        with self._redis() as r:
            sec, usec = r.time()
            now_ms = int(sec) * 1000 + int(usec) // 1000
            return int(r.zcount(self.keys.queue(queue).running, f"({now_ms}", "+inf")) == 0

    # -- settling and checking ---------------------------------------------------------

    def wait_final(self, ids: Sequence[str], timeout_s: float = 60.0) -> None:
        """Every id is in a final state in the record."""
        wait_for(
            lambda: self.final_count(ids) == len(ids),
            timeout_s,
            f"{len(ids)} tasks to reach a final state in the record",
            self.describe,
        )

    def runs_settled(self) -> bool:
        """Every run in the log ended, or its process is gone (killed mid-run)."""
        return all(r.end is not None or not alive(r.pid) for r in self.runs())

    def settle(self, ids: Sequence[str], timeout_s: float = 60.0) -> None:
        """Wait until the scenario is over: every id final, every run that can still end
        ended, and every transition in the record (late outcomes included).

        Stream entries that a killed recorder had read but not committed are taken over
        by another recorder only once idle for ``chalicelib.service.recorder.CLAIM_IDLE_MS``
        (30 s): a scenario that kills a recording process may wait that long here."""
        self.wait_final(ids, timeout_s)
        wait_for(self.runs_settled, timeout_s, "every handler run to end", self.describe)
        wait_for(
            lambda: self.unrecorded() == 0,
            timeout_s,
            "the event streams to reach the record",
            self.describe,
        )

    def check(
        self,
        scenario: str,
        ids: Sequence[str],
        *,
        explanations: Iterable[str] = checker.EXPLANATIONS,
        timeout_s: float = 60.0,
    ) -> Report:
        """Settle, then run the history checker over ``ids`` and add its row to the
        session's closing table."""
        self.settle(ids, timeout_s)
        record = checker.read_record(self.database_url, ids)
        report = checker.check(
            scenario, ids, self.runs(), record, explanations=frozenset(explanations)
        )
        if self.book is not None:
            self.book.add(report)
        self.reports.append(report)
        return report

    # -- teardown ----------------------------------------------------------------------

    def describe(self) -> str:
        """Every process's state and log tail, for failure messages."""
        return "\n".join(p.describe() for p in [*self._servers, *self.procs])

    def close(self) -> None:
        """Kill every process (then the servers) and remove the server data; logs stay."""
        for proc in reversed(self.procs):
            proc.cleanup()
        for server in reversed(self._servers):
            server.cleanup()
        shutil.rmtree(self.home, ignore_errors=True)
