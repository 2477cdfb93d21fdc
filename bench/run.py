"""``dtq bench``: run the scenarios of issue 7 on DTQ (and the peers), print a table,
write JSON. Called by workers/cli/bench.py; see bench/README.md for what each figure means.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import SCENARIOS, drive, procs, redis_server
from bench.peers import PEERS
from bench.stats import Figure, fmt, percentile
from chalicelib.core.models import Durability

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Scenarios the peers run too (through bench/peers/driver.py).
PEER_SCENARIOS = ("enqueue", "bulk", "drain", "latency")
LOAD_NOTE = "bench/load.py: a call 2 ms after the last, with the tasks due since then"
#: A worker keeps up with a load when it completes at least this share of it.
KEPT_UP = 0.97
QUEUE_NOTE = (
    "the bench queue's durability is queue: accepted once in Redis, its row written by "
    "the recorder (docs/guarantees.md)"
)
SUSTAINED_NOTE = (
    "the highest load (bench/load.py) one worker process keeps up with, the load's "
    f"enqueues on the same machine: it completes ≥ {KEPT_UP:.0%} of it"
)


@dataclass
class Options:
    quick: bool = False
    scenarios: tuple[str, ...] = SCENARIOS
    peers: tuple[str, ...] = ()
    runs: int = 3
    peer_runs: int = 2
    #: Tasks drained per run (DTQ and peers alike, as in issue 7's reference figures).
    n: int = 20_000
    peer_n: int = 20_000
    latency_samples: int = 300
    redis_url: str | None = None
    database_url: str | None = None
    work_dir: str = os.path.join(".dtq", "bench")
    json_path: str | None = None
    venv_root: str = os.path.join(".dtq", "bench-venv")

    @classmethod
    def quick_defaults(cls, **overrides: Any) -> Options:
        """Small N for a CI smoke run: every scenario in well under two minutes."""
        base = cls(quick=True, runs=1, peer_runs=1, n=300, peer_n=300, latency_samples=20)
        return dataclasses.replace(base, **overrides)


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    noise: dict[str, Any] = field(default_factory=dict)
    #: Peers left out because their runtime is missing here (one line each).
    skipped: list[str] = field(default_factory=list)

    def add(
        self,
        scenario: str,
        system: str,
        metric: str,
        unit: str,
        n: int,
        value: float,
        *,
        higher: bool = True,
        note: str = "",
    ) -> None:
        for f in self.figures:
            if (f.scenario, f.system, f.metric) == (scenario, system, metric):
                f.values.append(value)
                return
        self.figures.append(Figure(scenario, system, metric, unit, n, [value], higher, note))

    def get(self, scenario: str, system: str, metric: str) -> Figure | None:
        for f in self.figures:
            if (f.scenario, f.system, f.metric) == (scenario, system, metric):
                return f
        return None


def _say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


#: Each run gets a fresh database (same schema as the code under test, no rows left by
#: earlier runs to slow inserts down), dropped at the end; stale ones of dead runs too.
RUN_DB_PREFIX = "dtq_bench_run_"


def fresh_database(url: str, prefix: str = RUN_DB_PREFIX) -> str:
    """The URL of ``<prefix><pid>`` on ``url``'s server, dropped first if it exists, as
    are the ones of runs whose process is gone (created by ``migrate``)."""
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    name = f"{prefix}{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)
        ).fetchall()
        for (old,) in rows:
            pid = str(old).rsplit("_", 1)[-1]
            if old == name or (pid.isdigit() and not os.path.exists(f"/proc/{pid}")):
                conn.execute(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')
    return urlunsplit(parts._replace(path=f"/{name}"))


def drop_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')


class Bench:
    def __init__(self, opts: Options) -> None:
        from chalicelib.core.settings import Settings

        self.opts = opts
        self.res = Results()
        os.makedirs(opts.work_dir, exist_ok=True)
        base = Settings.from_env(os.environ)
        self.server: redis_server.RedisServer | None = None
        if opts.redis_url is None:
            self.server = redis_server.RedisServer()
            redis_url = self.server.url(0)
        else:
            redis_url = opts.redis_url
        self.redis_url = redis_url
        self.own_database = opts.database_url is None
        self.database_url = opts.database_url or fresh_database(base.database_url)
        #: PostgreSQL peers queue in their own database on the same server: bench_<peer>.
        self.peer_database_server = base.database_url
        from bench.dtq_system import DTQ

        self.dtq = DTQ(
            base, redis_url, self.database_url, opts.work_dir, flush_redis=self.server is not None
        )
        self.peer_python: dict[str, str] = {}
        if opts.peers:
            if self.server is None:
                raise SystemExit("dtq bench: --peers needs the private Redis (no --redis-url)")
            from bench.peers import setup

            self.peer_python = setup.ensure(
                opts.venv_root, list(opts.peers), skipped=self.res.skipped
            )
            ready = tuple(p for p in opts.peers if p in self.peer_python)
            self.opts = dataclasses.replace(opts, peers=ready)

    # -- noise -----------------------------------------------------------------------------

    def probe(self, when: str) -> None:
        self.res.noise[when] = {
            "loadavg": redis_server.load_average(),
            "cpu_probe_ms": redis_server.cpu_probe_ms(),
            "redis_ping_us": redis_server.redis_ping_us(self.redis_url),
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }

    # -- peers -----------------------------------------------------------------------------

    def peer(
        self, peer: str, scenario: str, *args: str, timeout_s: float = 1800
    ) -> dict[str, Any] | None:
        assert self.server is not None
        db = 1 + PEERS.index(peer)
        database = urlunsplit(urlsplit(self.peer_database_server)._replace(path=f"/bench_{peer}"))
        env = {
            **os.environ,
            "BENCH_REDIS_URL": self.server.url(db),
            "BENCH_DATABASE_URL": database,
            "PYTHONPATH": REPO,
        }
        cmd = [
            self.peer_python[peer],
            "-m",
            "bench.peers.driver",
            peer,
            scenario,
            "--work-dir",
            os.path.abspath(self.opts.work_dir),
            *args,
        ]
        try:
            cp = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.res.errors.append(f"{peer} {scenario}: timed out after {timeout_s} s")
            return None
        if cp.returncode == 3:
            return None
        if cp.returncode == 4:  # the peer's runtime is missing: one line, no error
            line = json.loads(cp.stdout.decode().strip().splitlines()[-1])["skipped"]
            if line not in self.res.skipped:
                self.res.skipped.append(line)
                _say(line)
            return None
        if cp.returncode != 0:
            tail = cp.stderr.decode(errors="replace").strip().splitlines()[-3:]
            self.res.errors.append(f"{peer} {scenario} {' '.join(args)}: {' | '.join(tail)}")
            return None
        out: dict[str, Any] = json.loads(cp.stdout.decode().strip().splitlines()[-1])
        return out

    def for_peers(self, scenario: str, fn: Callable[[str], None]) -> None:
        if scenario not in PEER_SCENARIOS:
            return
        for peer in self.opts.peers:
            _say(f"{scenario}: {peer}")
            fn(peer)

    # -- scenarios -------------------------------------------------------------------------

    def enqueue(self) -> None:
        o, r = self.opts, self.res
        n = 200 if o.quick else 5000  # as for the peers
        for _ in range(o.runs):
            r.add(
                "enqueue",
                "dtq",
                "one at a time, 1 thread",
                "tasks/s",
                n,
                drive.enqueue_rate(self.dtq, n),
            )
            r.add(
                "enqueue",
                "dtq",
                "one at a time, 8 threads",
                "tasks/s",
                n,
                drive.enqueue_rate(self.dtq, n, threads=8),
            )
            with self.dtq.durable_as(Durability.QUEUE):
                for threads in (1, 8):
                    r.add(
                        "enqueue",
                        "dtq",
                        f"one at a time, {_threads(threads)}, durability queue",
                        "tasks/s",
                        n,
                        drive.enqueue_rate(self.dtq, n, threads=threads),
                        note=QUEUE_NOTE,
                    )
        pn = 200 if o.quick else 5000
        for _ in range(o.peer_runs):

            def one(peer: str) -> None:
                out = self.peer(peer, "enqueue_one", "--n", str(pn))
                if out:
                    r.add("enqueue", peer, "one at a time, 1 thread", "tasks/s", pn, out["rate"])

            self.for_peers("enqueue", one)

    def bulk(self) -> None:
        o, r = self.opts, self.res
        n = 2000 if o.quick else 50_000
        for _ in range(o.runs):
            r.add(
                "bulk",
                "dtq",
                "enqueue_many, 1000/call",
                "tasks/s",
                n,
                drive.enqueue_rate(self.dtq, n, bulk=True),
            )
            with self.dtq.durable_as(Durability.QUEUE):
                r.add(
                    "bulk",
                    "dtq",
                    "enqueue_many, 1000/call, durability queue",
                    "tasks/s",
                    n,
                    drive.enqueue_rate(self.dtq, n, bulk=True),
                    note=QUEUE_NOTE,
                )
        pn = 2000 if o.quick else 20_000
        for _ in range(o.peer_runs):

            def one(peer: str) -> None:
                out = self.peer(peer, "enqueue_bulk", "--n", str(pn))
                if out and "rate" in out:
                    r.add("bulk", peer, "enqueue_many, 1000/call", "tasks/s", pn, out["rate"])

            self.for_peers("bulk", one)

    def api(self) -> None:
        from bench.api import ApiServer, post_rate
        from bench.dtq_system import QUEUE
        from chalicelib.queue.scripts import DURABILITY_TTL_S

        o, r = self.opts, self.res
        server = ApiServer(
            self.dtq.worker_env(), self.dtq.svc.store, os.path.join(o.work_dir, "api.log")
        )
        try:
            one_n = 100 if o.quick else 2000
            batches = 2 if o.quick else 20
            size = 100 if o.quick else 1000
            for _ in range(o.runs):
                r.add(
                    "api",
                    "dtq",
                    "POST /tasks, 1 connection",
                    "requests/s",
                    one_n,
                    post_rate(server, one_n, 1, 0),
                )
                r.add(
                    "api",
                    "dtq",
                    "POST /tasks, 8 connections",
                    "requests/s",
                    one_n,
                    post_rate(server, one_n, 8, 0),
                )
                r.add(
                    "api",
                    "dtq",
                    f"POST /tasks/batch ({size}), 1 connection",
                    "tasks/s",
                    batches * size,
                    post_rate(server, batches, 1, size),
                )
                r.add(
                    "api",
                    "dtq",
                    f"POST /tasks/batch ({size}), 2 connections",
                    "tasks/s",
                    batches * size,
                    post_rate(server, batches, 2, size),
                )
                for durability in (Durability.QUEUE, Durability.RECORD):
                    self.dtq.svc.queue.configure(QUEUE, durability=durability)
                    # The API process reads a queue's durability at most once a second.
                    time.sleep(DURABILITY_TTL_S + 0.1)
                    if durability == Durability.QUEUE:
                        r.add(
                            "api",
                            "dtq",
                            "POST /tasks, 8 connections, durability queue",
                            "requests/s",
                            one_n,
                            post_rate(server, one_n, 8, 0),
                            note=QUEUE_NOTE,
                        )
            r.add(
                "api", "dtq", "API process RSS", "MB", 0, server.rss_bytes() / 2**20, higher=False
            )
        finally:
            server.stop()

    def drain(self) -> None:
        o, r = self.opts, self.res
        configs = ((1, 1), (1, 16), (2, 16))  # (processes, concurrency)
        for _ in range(o.runs):
            for processes, conc in configs:
                self._dtq_drain(processes, conc)
        for _ in range(o.peer_runs):
            for processes in (1, 2):

                def one(peer: str, processes: int = processes) -> None:
                    out = self.peer(
                        peer, "drain", "--n", str(o.peer_n), "--processes", str(processes)
                    )
                    if out:
                        label = f"{processes} process{'es' if processes > 1 else ''}"
                        r.add("drain", peer, label, "tasks/s", o.peer_n, out["rate"])
                        r.add(
                            "drain",
                            peer,
                            f"worker RSS, {label}",
                            "MB",
                            o.peer_n,
                            out["rss_bytes"] / 2**20,
                            higher=False,
                        )
                        self._peer_drain_extra(peer, label, out)

                self.for_peers("drain", one)

    def _peer_drain_extra(self, peer: str, label: str, out: dict[str, Any]) -> None:
        """A peer's drain at each concurrency it tried (its figure is the best), and its
        CPU per task by process group."""
        o, r = self.opts, self.res
        for conc, one in out.get("by_concurrency", {}).items():
            r.add("drain", peer, f"{label}, concurrency {conc}", "tasks/s", o.peer_n, one["rate"])
        cpu = out.get("cpu_us", {})
        for group in (*cpu, "total") if cpu else ():
            us = sum(cpu.values()) if group == "total" else cpu[group]
            r.add(
                "drain",
                peer,
                f"CPU per task, {group}, {label}",
                "µs",
                o.peer_n,
                us,
                higher=False,
                note="/proc utime+stime between the first and the last "
                "task's start; the best concurrency's run",
            )

    def _dtq_drain(self, processes: int, conc: int) -> float:
        o, r = self.opts, self.res
        self.dtq.concurrency = conc
        backlog = [0]
        last_probe = [0.0]

        def during() -> None:
            now = time.monotonic()
            if now - last_probe[0] >= 0.05:
                last_probe[0] = now
                backlog[0] = max(backlog[0], self.dtq.backlog())

        def after() -> dict[str, Any]:
            return {"record_lag_s": self.dtq.wait_recorded(self.dtq.last_id)}

        label = f"{processes} process{'es' if processes > 1 else ''}"
        label_c = f"{label}, concurrency {conc}"
        res = drive.drain(
            self.dtq,
            o.n,
            processes,
            o.work_dir,
            during=during,
            after=after,
            cpu_groups=self._cpu_groups,
        )
        r.add("drain", "dtq", label_c, "tasks/s", o.n, res.rate)
        cpu = res.extra.get("cpu_s", {})
        for group in (*cpu, "total"):
            seconds = sum(cpu.values()) if group == "total" else cpu[group]
            r.add(
                "drain",
                "dtq",
                f"CPU per task, {group}, {label_c}",
                "µs",
                o.n,
                seconds * 1e6 / max(1, o.n - 1),
                higher=False,
                note="/proc utime+stime between the first and the last task's start",
            )
        r.add(
            "drain", "dtq", f"worker RSS, {label_c}", "MB", o.n, res.rss_bytes / 2**20, higher=False
        )
        r.add(
            "drain",
            "dtq",
            f"record lag after last start, {label_c}",
            "s",
            o.n,
            res.extra["record_lag_s"],
            higher=False,
            note="last task started → Postgres shows it succeeded (10 ms polls)",
        )
        r.add(
            "drain",
            "dtq",
            f"max unrecorded events, {label_c}",
            "events",
            o.n,
            backlog[0],
            higher=False,
            note="XLEN of the events stream, 50 ms samples",
        )
        return res.rate

    def _cpu_groups(self, workers: list[Any]) -> dict[str, list[int]]:
        """Where a drain's CPU goes: the worker processes, their children (the
        recorder), Redis and PostgreSQL (every process of the server)."""
        roots = [p.pid for p in workers]
        redis = [self.server.proc.pid] if self.server else procs.pids_named("redis-server")
        return {
            "worker": roots,
            "recorder": sorted(procs.descendants(roots)),
            "redis": redis,
            "postgres": procs.pids_named("postgres"),
        }

    def inprocess(self) -> None:
        o, r = self.opts, self.res
        n = 1000 if o.quick else o.n
        note = "in-process claim(100) → report_many loop (bench/core.py), no worker"
        for _ in range(o.runs):
            r.add(
                "inprocess",
                "dtq",
                "claim→complete, not recorded",
                "tasks/s",
                n,
                self.dtq.claim_loop(n, record=False),
                note=note,
            )
            r.add(
                "inprocess",
                "dtq",
                "claim→complete + recorder",
                "tasks/s",
                n,
                self.dtq.claim_loop(n, record=True),
                note=note,
            )

    def latency(self) -> None:
        o, r = self.opts, self.res
        samples = o.latency_samples
        self.dtq.concurrency = 16
        peak = self.res.get("drain", "dtq", "1 process, concurrency 16")
        peak_rate = peak.median if peak else self._dtq_drain(1, 16)
        # Two meanings of "half of peak": half the drain rate of pre-enqueued tasks, and
        # half the load the queue sustains while that load is enqueued on the same two
        # cores (utilisation one half; the enqueues' CPU is not free, so this is lower).
        sustained = []
        for _ in range(o.runs):
            rate, n = self._sustained_peak(peak_rate)
            r.add(
                "latency",
                "dtq",
                "sustained peak, enqueue and drain at once, 1 process",
                "tasks/s",
                n,
                rate,
                note=SUSTAINED_NOTE,
            )
            sustained.append(rate)
        half_sustained = statistics.median(sustained) / 2
        loads = {
            f"at half peak ({peak_rate / 2:,.0f} tasks/s)": peak_rate / 2,
            f"at half sustained peak ({half_sustained:,.0f} tasks/s)": half_sustained,
        }
        for _ in range(o.runs):
            idle = drive.latency(self.dtq, samples, o.work_dir)
            self._latency("dtq", "idle worker", samples, *idle)
            with self.dtq.durable_as(Durability.QUEUE):
                idle = drive.latency(self.dtq, samples, o.work_dir)
            self._latency("dtq", "idle worker, durability queue", samples, *idle)
            for label, rate in loads.items():
                self._latency_under_load(label, rate, samples)
        for _ in range(o.peer_runs):

            def one(peer: str) -> None:
                out = self.peer(peer, "latency", "--samples", str(samples))
                if out:
                    for p in (50, 90, 99):
                        r.add(
                            "latency",
                            peer,
                            f"idle worker p{p}",
                            "ms",
                            samples,
                            out[f"p{p}"],
                            higher=False,
                        )
                    r.add(
                        "latency",
                        peer,
                        "idle worker: enqueue call p50",
                        "ms",
                        samples,
                        out["call_p50"],
                        higher=False,
                    )
                    if "pipe_us" in out:  # a Node peer's calls go through a pipe
                        r.add(
                            "latency",
                            peer,
                            "pipe round trip to its producer p50",
                            "µs",
                            200,
                            out["pipe_us"],
                            higher=False,
                            note="part of its enqueue call p50, not of its latency",
                        )

            self.for_peers("latency", one)

    def _latency_under_load(self, label: str, rate: float, samples: int) -> None:
        o, r = self.opts, self.res
        stats_path = os.path.join(o.work_dir, "load-stats.json")
        if os.path.exists(stats_path):
            os.remove(stats_path)  # read below: only this run's
        load = [sys.executable, "-m", "bench.load", str(rate), stats_path]
        loaded = drive.latency(self.dtq, samples, o.work_dir, load_command=load)
        self._latency("dtq", label, samples, *loaded)
        with open(stats_path) as f:
            made = json.load(f)
        per_call = made["tasks"] / max(1, made["calls"])
        r.add(
            "latency",
            "dtq",
            f"{label}: load tasks per enqueue_many call",
            "tasks",
            made["calls"],
            per_call,
            higher=False,
            note=LOAD_NOTE,
        )

    def _sustained_peak(self, drain_peak: float) -> tuple[float, int]:
        """The highest load one worker keeps up with, and the tasks it completed in a
        window of it. First what the worker completes when offered the drain peak, ``c``:
        more than it can take, since the load's enqueues share the cores. A worker with
        a backlog claims in large batches, so ``c`` may be more than it keeps up with
        when its queue runs empty between batches; then a bisection between 0.75 ``c``
        and 1.25 ``c`` (at most the drain peak) on whether it keeps up."""
        o = self.opts
        settle_s, window_s = (0.5, 1.0) if o.quick else (2.0, 6.0)

        def completes(offered: float) -> float:
            load = [sys.executable, "-m", "bench.load", str(offered)]
            return drive.completion_rate(
                self.dtq, o.work_dir, load, self.dtq.succeeded, settle_s=settle_s, window_s=window_s
            )

        overloaded = completes(drain_peak)
        low = 0.75 * overloaded
        high = max(low, min(1.25 * overloaded, drain_peak))
        for _ in range(1 if o.quick else 3):
            middle = (low + high) / 2
            if completes(middle) >= KEPT_UP * middle:
                low = middle
            else:
                high = middle
        return low, int(low * window_s)

    def _latency(
        self, system: str, label: str, samples: int, lat: list[float], calls: list[float]
    ) -> None:
        for p in (50, 90, 99):
            self.res.add(
                "latency", system, f"{label} p{p}", "ms", samples, percentile(lat, p), higher=False
            )
        self.res.add(
            "latency",
            system,
            f"{label}: enqueue call p50",
            "ms",
            samples,
            percentile(calls, 50),
            higher=False,
            note="part of the latency: t0 is taken just before the call",
        )

    def spawn(self) -> None:
        """Spawn → first claim of a new worker process (bench/spawn.py): per run, the
        median of several spawns in each record mode, the modes interleaved."""
        from bench.spawn import spawn

        o, r = self.opts, self.res
        n = 3 if o.quick else 7
        self.dtq.concurrency = 1  # dtq worker's default
        note = "Popen → the queued task's handler starts; the median of N spawns per run"
        spawn(self.dtq, o.work_dir, "process")  # writes the bytecode caches: not timed
        for _ in range(o.runs):
            starts: dict[str, list[float]] = {"process": [], "off": []}
            cpus: dict[str, list[float]] = {"process": [], "off": []}
            recorded = []
            for _ in range(n):
                for mode, got in starts.items():
                    one = spawn(self.dtq, o.work_dir, mode)
                    got.append(one.start_s)
                    cpus[mode].append(one.cpu_s)
                    if mode == "process":
                        recorded.append(one.recorded_s)
            for mode, got in starts.items():
                label = "default (--record process)" if mode == "process" else "--record off"
                r.add(
                    "spawn",
                    "dtq",
                    f"spawn → first claim, {label}",
                    "s",
                    n,
                    statistics.median(got),
                    higher=False,
                    note=note,
                )
                r.add(
                    "spawn",
                    "dtq",
                    f"worker CPU spawn → first claim, {label}",
                    "s",
                    n,
                    statistics.median(cpus[mode]),
                    higher=False,
                    note="utime + stime of the worker process (/proc, 10 ms ticks)",
                )
            r.add(
                "spawn",
                "dtq",
                "spawn → its task recorded in PostgreSQL (--record process)",
                "s",
                n,
                statistics.median(recorded),
                higher=False,
                note="Popen → the task's row shows it succeeded (10 ms polls)",
            )
        self.dtq.reset()

    def claim(self) -> None:
        o, r = self.opts, self.res
        depths = (1000, 10_000) if o.quick else (1000, 1_000_000)
        claims = 50 if o.quick else 300
        for depth in depths:
            costs = self.dtq.claim_costs_us(depth, claims, (1, 100), o.runs)
            for batch, values in costs.items():
                for v in values:
                    r.add(
                        "claim",
                        "dtq",
                        f"claim({batch}) with {depth:,} queued",
                        "µs/claim",
                        claims,
                        v,
                        higher=False,
                    )
        self.dtq.reset()

    def memory(self) -> None:
        n = 2000 if self.opts.quick else 100_000
        per_task, hash_bytes, payload = self.dtq.memory_per_task(n)
        self.res.add(
            "memory",
            "dtq",
            "Redis used_memory per queued task",
            "bytes",
            n,
            per_task,
            higher=False,
            note=f"payload {{}} = {payload} bytes",
        )
        self.res.add(
            "memory", "dtq", "MEMORY USAGE of one task hash", "bytes", 1, hash_bytes, higher=False
        )
        self.dtq.reset()

    def cluster(self) -> None:
        """The same drain on a 1-shard and a 3-shard Redis Cluster (bench/cluster.py)."""
        from bench import cluster
        from bench.dtq_system import DTQ
        from bench.redis_server import LocalCluster

        o, r = self.opts, self.res
        n = max(o.n, 600) if o.quick else o.n
        label = (
            f"{len(cluster.QUEUES)} queues, {cluster.PROCESSES} processes, "
            f"concurrency {cluster.CONCURRENCY}"
        )
        note = "succeeded counters of every queue, 5 % → 95 % of N; all on this machine"
        base = dataclasses.replace(self.dtq.base, redis_cluster=True)
        clusters: list[LocalCluster] = []
        systems: list[DTQ] = []
        try:
            for shards in cluster.SHARDS:
                clusters.append(LocalCluster(shards))
                systems.append(
                    DTQ(base, clusters[-1].url, self.database_url, o.work_dir, flush_redis=True)
                )
            for _ in range(o.runs):
                for shards, nodes, system in zip(cluster.SHARDS, clusters, systems, strict=True):
                    res = cluster.drain(system, nodes, n, o.work_dir)
                    name = f"{shards} shard{'s' if shards > 1 else ''}"
                    metric = f"drain, {name}, {label}"
                    r.add("cluster", "dtq", metric, "tasks/s", n, res.rate, note=note)
                    for group, seconds in res.cpu_s.items():
                        r.add(
                            "cluster",
                            "dtq",
                            f"CPU, {group}, {name}",
                            "% of a core",
                            n,
                            100 * seconds / res.window_s,
                            higher=False,
                            note="/proc utime+stime over the measured window",
                        )
        finally:
            for system in systems:
                system.close()
            for nodes in clusters:
                nodes.stop()

    # -- run ---------------------------------------------------------------------------------

    def run(self) -> Results:
        self.probe("start")
        for name in SCENARIOS:
            if name not in self.opts.scenarios:
                continue
            _say(f"{name} …")
            start = time.monotonic()
            try:
                getattr(self, name)()
            except Exception as exc:  # one broken scenario must not lose the others
                self.res.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            _say(f"{name} done in {time.monotonic() - start:.1f} s")
        self.probe("end")
        return self.res

    def close(self) -> None:
        try:
            self.dtq.close()
        finally:
            if self.server is not None:
                self.server.stop()
            if self.own_database:
                drop_database(self.database_url)


# -- output ----------------------------------------------------------------------------------


def table(res: Results) -> str:
    lines = []
    head = (
        f"{'scenario':<10} {'system':<9} {'metric':<60} {'N':>7} {'runs':>4} "
        f"{'min':>9} {'median':>9} {'max':>9}  unit"
    )
    lines.append(head)
    lines.append("-" * len(head))
    for f in res.figures:
        v = f.values
        lines.append(
            f"{f.scenario:<10} {f.system:<9} {f.metric[:60]:<60} {f.n:>7} {f.runs:>4} "
            f"{fmt(min(v)):>9} {fmt(f.median):>9} {fmt(max(v)):>9}  {f.unit}"
        )
    ratios = ratio_rows(res)
    if ratios:
        lines.append("")
        lines.append(
            "DTQ/peer, medians of this run (rates: >1 means DTQ is faster; "
            "latency: <1 means DTQ is faster)"
        )
        peers = sorted({p for row in ratios for p in row["peers"]}, key=PEERS.index)
        lines.append(f"{'figure':<40} {'dtq':>9} " + "".join(f"{p:>16}" for p in peers))
        for row in ratios:
            cells = ""
            for p in peers:
                got = row["peers"].get(p)
                cells += (
                    f"{fmt(got['median']) + ' (' + fmt(got['ratio']) + 'x)':>16}"
                    if got
                    else f"{'-':>16}"
                )
            lines.append(f"{row['figure'][:40]:<40} {fmt(row['dtq']):>9} {cells}")
    if res.skipped:
        lines.append("")
        lines.extend(f"skipped: {s}" for s in res.skipped)
    if res.errors:
        lines.append("")
        lines.extend(f"error: {e}" for e in res.errors)
    if res.noise:
        lines.append("")
        for when, probe in res.noise.items():
            la = ", ".join(f"{x:.2f}" for x in probe["loadavg"])
            lines.append(
                f"noise at {when}: load average {la}; CPU probe "
                f"{probe['cpu_probe_ms']:.0f} ms; Redis PING {probe['redis_ping_us']:.0f} µs"
            )
    return "\n".join(lines)


def _threads(n: int) -> str:
    return "1 thread" if n == 1 else f"{n} threads"


#: DTQ figure ↔ the peer figure it is compared with.
COMPARE = (
    ("enqueue", "one at a time, 1 thread", "one at a time, 1 thread"),
    ("enqueue", "one at a time, 1 thread, durability queue", "one at a time, 1 thread"),
    ("enqueue", "one at a time, 8 threads, durability queue", "one at a time, 1 thread"),
    ("bulk", "enqueue_many, 1000/call", "enqueue_many, 1000/call"),
    ("bulk", "enqueue_many, 1000/call, durability queue", "enqueue_many, 1000/call"),
    ("drain", "1 process, concurrency 16", "1 process"),
    ("drain", "1 process, concurrency 1", "1 process"),
    ("drain", "2 processes, concurrency 16", "2 processes"),
    ("drain", "worker RSS, 1 process, concurrency 16", "worker RSS, 1 process"),
    ("drain", "CPU per task, total, 1 process, concurrency 16", "CPU per task, total, 1 process"),
    ("latency", "idle worker p50", "idle worker p50"),
    ("latency", "idle worker p90", "idle worker p90"),
    ("latency", "idle worker p99", "idle worker p99"),
    ("latency", "idle worker, durability queue p50", "idle worker p50"),
    ("latency", "idle worker, durability queue p99", "idle worker p99"),
    ("latency", "idle worker: enqueue call p50", "idle worker: enqueue call p50"),
)


def ratio_rows(res: Results) -> list[dict[str, Any]]:
    rows = []
    for scenario, dtq_metric, peer_metric in COMPARE:
        mine = res.get(scenario, "dtq", dtq_metric)
        if mine is None:
            continue
        peers = {}
        for p in PEERS:
            theirs = res.get(scenario, p, peer_metric)
            if theirs is not None and theirs.median:
                peers[p] = {"median": theirs.median, "ratio": mine.median / theirs.median}
        if peers:
            rows.append({"figure": f"{scenario}: {dtq_metric}", "dtq": mine.median, "peers": peers})
    return rows


def to_json(res: Results, opts: Options, argv: list[str]) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "dtq bench " + " ".join(argv),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "options": {k: v for k, v in dataclasses.asdict(opts).items()},
        "figures": [f.to_json() for f in res.figures],
        "ratios": ratio_rows(res),
        "errors": res.errors,
        "skipped": res.skipped,
        "noise": res.noise,
    }


def main(opts: Options, argv: list[str]) -> int:
    bench = Bench(opts)
    try:
        res = bench.run()
    finally:
        bench.close()
    print(table(res))
    path = opts.json_path or os.path.join(
        opts.work_dir, f"results-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(to_json(res, opts, argv), f, indent=2, default=str)
    print(f"\nJSON: {path}")
    return 1 if res.errors else 0
