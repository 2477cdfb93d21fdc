"""``dtq worker``: builds a worker from the flags and the environment and runs it.

Redis mode (default) talks to Redis directly and also needs ``DTQ_DATABASE_URL``: a
recorder moves the queue's transitions into Postgres and a notifier sends what they
schedule, so the record stays current without an API running (``--record process``, the
default: one child process, see ``workers.recorder_child``; ``thread``: threads of the
worker; ``off``/``--no-record`` when ``dtq record`` runs elsewhere). Tasks created by
handlers are recorded before they are queued.
HTTP mode (``--api URL``) needs only the API and the worker credentials
(``DTQ_WORKER_USERNAME`` / ``DTQ_WORKER_PASSWORD``).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import socket
import sys
import threading
from types import FrameType
from typing import Any

from chalicelib.core.errors import ConfigError
from chalicelib.core.settings import Settings
from workers import registry
from workers.heap import freeze_startup_heap
from workers.offline import Journal, JournalBusy
from workers.slots import PoolFactory, SlotPool
from workers.worker import Worker, WorkerConfig

log = logging.getLogger("dtq.worker")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("worker", help="run a worker (Redis, or the HTTP API with --api)")
    p.add_argument("--queues", default="default", help="comma-separated queue names")
    p.add_argument("--concurrency", type=int, default=1, help="slots running tasks")
    p.add_argument(
        "--pool",
        choices=("thread", "process"),
        default="thread",
        help="slots are threads (default) or child processes, for CPU-bound handlers",
    )
    p.add_argument(
        "--tasks", default=None, help="comma-separated handler modules (default: DTQ_TASKS)"
    )
    _add_path_option(p, "--tasks")
    p.add_argument("--api", default=None, metavar="URL", help="use the HTTP API, not Redis")
    p.add_argument(
        "--offline-db",
        default=None,
        metavar="PATH",
        help="SQLite journal, locked for the worker's life; refused when another "
        "worker holds it (default: the first free of .dtq/journal-<hostname>.db, "
        ".dtq/journal-<hostname>-2.db, …)",
    )
    p.add_argument("--grace-seconds", type=float, default=30.0)
    p.add_argument(
        "--lease-seconds",
        type=float,
        default=None,
        help="lease length (default: DTQ_LEASE_SECONDS, 30)",
    )
    p.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="tasks held beyond free slots (default: what the slots finish in "
        "≈ 5 ms at the tasks' recent run time, between concurrency and "
        "max(4 * concurrency, 16))",
    )
    p.add_argument("--worker-id", default=None)
    p.add_argument(
        "--record",
        choices=("process", "thread", "off"),
        default="process",
        help="Redis mode: run the recorder and notifier in a child process "
        "(default), in threads of the worker, or not at all",
    )
    p.add_argument(
        "--no-record",
        dest="record",
        action="store_const",
        const="off",
        default=argparse.SUPPRESS,
        help="same as --record off",
    )
    p.add_argument("--burst", action="store_true", help="exit once nothing is left to claim")
    p.set_defaults(func=cmd_worker)


def _add_path_option(p: argparse.ArgumentParser, option: str) -> None:
    p.add_argument(
        "--path",
        action="append",
        default=None,
        metavar="DIR",
        help=f"a folder to import {option} from, put first on the import path; repeat "
        "for more (default: the current folder)",
    )


def _config(args: argparse.Namespace, settings: Settings) -> WorkerConfig:
    if args.concurrency < 1:
        raise ConfigError("--concurrency: must be at least 1")
    if args.prefetch is not None and args.prefetch < 0:
        raise ConfigError("--prefetch: must be 0 or more")
    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    if not queues:
        raise ConfigError("--queues: name at least one queue")
    lease_s = args.lease_seconds or settings.lease_seconds
    if lease_s <= 0.3:
        raise ConfigError("--lease-seconds: must be more than 0.3")
    hostname = socket.gethostname()
    return WorkerConfig(
        queues=queues,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        lease_ms=int(lease_s * 1000),
        grace_s=max(0.0, args.grace_seconds),
        worker_id=args.worker_id or f"{hostname}:{os.getpid()}",
        hostname=hostname,
        max_payload_bytes=settings.max_payload_bytes,
    )


def _journal(path: str | None, hostname: str) -> Journal:
    if path is None:
        return Journal.first_free(".dtq", hostname)
    try:
        return Journal(path)
    except JournalBusy as exc:
        # Given explicitly, the file is not swapped for another: its rows would wait there.
        raise ConfigError(
            f"--offline-db {exc.message}; each worker needs a journal of its own"
        ) from None


def _install_signals(worker: Worker) -> None:
    seen: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if seen:  # the second signal: leave now; the leases expire and tasks are retried
            os._exit(128 + signum)
        seen.append(signum)
        log.warning("signal %d: finishing held tasks (again to exit at once)", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def cmd_worker(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env(os.environ)
    config = _config(args, settings)
    # First: a worker refused its journal stops before it loads or starts anything.
    journal = _journal(args.offline_db, config.hostname)
    modules = (args.tasks if args.tasks is not None else settings.tasks).split(",")
    registry.use_import_path(args.path or ["."])
    handlers = registry.load(modules)
    pool: PoolFactory = SlotPool
    if args.pool == "process":
        from workers.procpool import ProcessPool

        pool = functools.partial(ProcessPool, modules=modules)
    stop_recorder = threading.Event()
    closers: list[Any] = [journal.close]
    if args.api:
        from workers.http_transport import HttpTransport

        transport: Any = HttpTransport(args.api, settings.worker_username, settings.worker_password)
        worker = Worker(config, transport, handlers, journal, pool=pool)
    else:
        worker = _redis_worker(
            settings,
            config,
            handlers,
            journal,
            args.record == "thread",
            stop_recorder,
            closers,
            pool,
        )
        if args.record == "process":
            from workers.recorder_child import RecorderChild

            child = RecorderChild(consumer=f"{config.worker_id}:rec")
            child.start()
            closers.append(child.close)  # closed first, once the worker's last events exist
    _install_signals(worker)
    log.info(
        "worker %s: queues %s, concurrency %d (%s pool), %s mode, handlers: %s",
        worker.worker_id,
        ",".join(config.queues),
        config.concurrency,
        args.pool,
        worker.transport.mode,
        ", ".join(handlers.names()),
    )
    freeze_startup_heap()
    try:
        worker.run(burst=args.burst)
    finally:
        stop_recorder.set()
        for close in reversed(closers):
            close()
    log.info("worker %s stopped: %s", worker.worker_id, worker.counts)
    return 0


def _redis_worker(
    settings: Settings,
    config: WorkerConfig,
    handlers: registry.Registry,
    journal: Journal,
    record_threads: bool,
    stop_recorder: threading.Event,
    closers: list[Any],
    pool: PoolFactory,
) -> Worker:
    from chalicelib.queue.locks import LockScripts
    from chalicelib.service import deps
    from chalicelib.service.background import Background
    from chalicelib.service.fleet import Fleet
    from workers.transport import RedisTransport

    svc = deps.build(settings, pool_size=4)
    deps.check_redis(svc)
    closers.append(svc.close)
    transport = RedisTransport(svc.queue, Fleet(svc.queue, svc.store), svc.tasks)
    locks = LockScripts(svc.redis, svc.queue.on_new_server)
    worker = Worker(config, transport, handlers, journal, locks=(locks, svc.keys), pool=pool)
    if record_threads:
        # The record and the notifications it schedules follow this worker's own work, so
        # a deployment of workers alone (no API process) keeps both current.
        background = Background(svc, f"{config.worker_id}:rec")
        background.start(stop_recorder)
        closers.append(lambda: background.close(5.0))
    return worker


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run through the dtq command: dtq worker --help")
