"""``dtq worker``: builds a worker from the flags and the environment and runs it.

Redis mode (default) talks to Redis directly and also needs ``DTQ_DATABASE_URL``: a
recorder moves the queue's transitions into Postgres and a notifier sends what they
schedule, so the record stays current without an API running (``--record process``, the
default: one child process, see ``workers.recorder_child``; ``thread``: threads of the
worker; ``off``/``--no-record`` when ``dtq record`` runs elsewhere). Tasks created by
handlers are recorded before they are queued. A worker claims first: its recorder (child
or threads) starts right after its first claim, so that a worker started for waiting
tasks (scaling from zero) starts them sooner (``dtq bench --scenario spawn``).
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
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from chalicelib.core.errors import ConfigError
from chalicelib.core.settings import Settings
from workers.heap import freeze_startup_heap, pause_collector

# The runtime is imported by cmd_worker, once the collector is paused (workers/heap.py).
if TYPE_CHECKING:
    from chalicelib.service.deps import Services
    from workers.offline import Journal
    from workers.slots import PoolFactory
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
    from workers.worker import WorkerConfig

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
    from workers.offline import Journal, JournalBusy

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
    # What the first claim needs comes first; the rest starts right after it (``then``).
    pause_collector()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env(os.environ)
    config = _config(args, settings)
    # First: a worker refused its journal stops before it loads or starts anything.
    journal = _journal(args.offline_db, config.hostname)
    closers: list[Callable[[], object]] = [journal.close]
    then: list[Callable[[], object]] = []
    stop_recorder = threading.Event()
    try:
        worker = _worker(args, settings, config, journal, closers, then, stop_recorder)
        _install_signals(worker)
        log.info(
            "worker %s: queues %s, concurrency %d (%s pool), %s mode, handlers: %s",
            worker.worker_id,
            ",".join(config.queues),
            config.concurrency,
            args.pool,
            worker.transport.mode,
            ", ".join(worker.registry.names()),
        )
        freeze_startup_heap(collect=False)

        def after_first_claim() -> None:
            for step in then:
                step()

        worker.run(burst=args.burst, then=after_first_claim)
    finally:
        # The recorder's last round follows the worker's last events.
        stop_recorder.set()
        for close in reversed(closers):
            close()
    log.info("worker %s stopped: %s", worker.worker_id, worker.counts)
    return 0


def _worker(
    args: argparse.Namespace,
    settings: Settings,
    config: WorkerConfig,
    journal: Journal,
    closers: list[Callable[[], object]],
    then: list[Callable[[], object]],
    stop_recorder: threading.Event,
) -> Worker:
    from workers import registry
    from workers.slots import SlotPool
    from workers.worker import Worker

    modules = (args.tasks if args.tasks is not None else settings.tasks).split(",")
    registry.use_import_path(args.path or ["."])
    handlers = registry.load(modules)
    pool: PoolFactory = SlotPool
    if args.pool == "process":
        from workers.procpool import ProcessPool

        pool = functools.partial(ProcessPool, modules=modules)
    if args.api:
        from workers.http_transport import HttpTransport

        transport = HttpTransport(args.api, settings.worker_username, settings.worker_password)
        return Worker(config, transport, handlers, journal, pool=pool)
    from chalicelib.queue.locks import LockScripts
    from chalicelib.service import deps
    from chalicelib.service.fleet import Fleet
    from workers.transport import RedisTransport

    svc = deps.build(settings, pool_size=4)
    closers.append(svc.close)
    deps.check_redis(svc)
    redis_transport = RedisTransport(svc.queue, Fleet(svc.queue, svc.store), svc.tasks)
    locks = LockScripts(svc.redis, svc.queue.on_new_server)
    if args.record == "process":
        from workers.recorder_child import RecorderChild

        child = RecorderChild(consumer=f"{config.worker_id}:rec")
        then.append(child.launch)
        closers.append(child.close)  # after the worker's last events, before svc.close
    elif args.record == "thread":
        then.append(lambda: _record_threads(svc, config.worker_id, stop_recorder, closers))
    return Worker(config, redis_transport, handlers, journal, locks=(locks, svc.keys), pool=pool)


def _record_threads(
    svc: Services, worker_id: str, stop: threading.Event, closers: list[Callable[[], object]]
) -> None:
    """``--record thread``: the record and the notifications it schedules follow this
    worker's own work, so a deployment of workers alone (no API process) keeps both
    current."""
    from chalicelib.service.background import Background

    background = Background(svc, f"{worker_id}:rec")
    background.start(stop)
    closers.append(lambda: background.close(5.0))


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run through the dtq command: dtq worker --help")
