"""The ``dtq`` command: a thin dispatch from verbs to the modules that own them.

Each verb registers its parser in ``COMMANDS``; a handler returns the exit status.
A DTQError (bad setting, service down, bad input) is one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from chalicelib.core.errors import DTQError
from chalicelib.core.settings import Settings

Handler = Callable[[argparse.Namespace], int]


def _settings() -> Settings:
    return Settings.from_env(os.environ)


def _services() -> Any:
    from chalicelib.service import deps

    return deps.build(_settings())


def cmd_migrate(args: argparse.Namespace) -> int:
    from chalicelib.record import migrate

    applied = migrate.migrate(_settings())
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    from chalicelib.service.recorder import Recorder
    from chalicelib.service.recover import recover

    svc = _services()
    try:
        svc.queue.check_eviction_policy(svc.settings.allow_evicting_redis)
        # Record what Redis still holds first, so the record is as fresh as it can be.
        recorded = Recorder(svc.queue, svc.store, "recover").drain()
        report = recover(svc.tasks)
    finally:
        svc.close()
    print(
        f"recorded {recorded} pending stream entries; checked {report.checked} live task(s); "
        f"restored {report.restored} into Redis; epoch {report.epoch}"
    )
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    import logging
    import signal
    import socket
    import threading

    from workers.heap import freeze_startup_heap, pause_collector

    pause_collector()
    from chalicelib.service.background import Background

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    # SIGTERM / SIGINT are taken by a thread, not a handler: Event.set in a handler can
    # deadlock on the event's lock (seen: the signal landed while the main thread was in
    # stop.wait). Blocked first, so that every thread started later inherits the mask.
    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)

    def on_signal() -> None:
        signal.sigwait(signals)
        stop.set()

    threading.Thread(target=on_signal, name="dtq-signals", daemon=True).start()
    if args.parent_pid is not None:  # the child of `dtq worker --record process`
        from workers.recorder_child import exit_with_parent

        exit_with_parent(args.parent_pid, stop)
    svc = _services()
    consumer = args.consumer or f"{socket.gethostname()}:{os.getpid()}"
    background = Background(svc, consumer)
    if args.ready_fd is not None:  # what the worker's supervisor thread waits for
        os.write(args.ready_fd, b"1")
        os.close(args.ready_fd)
    freeze_startup_heap()
    background.start(stop)
    try:
        stop.wait()
    finally:
        stop.set()
        background.close()
        svc.close()
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise DTQError(f"--payload is not valid JSON: {exc.msg}") from None
    options: dict[str, Any] = {"queue": args.queue, "priority": args.priority}
    if args.delay is not None:
        options["delay_seconds"] = args.delay
    svc = _services()
    try:
        task = svc.tasks.enqueue(args.name, payload, **options)
    finally:
        svc.close()
    print(json.dumps(task, indent=2))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from chalicelib.service.fleet import Fleet

    svc = _services()
    try:
        stats = svc.tasks.queue_stats()
        workers = Fleet(svc.queue, svc.store).describe()
        failing = [
            t for status in ("retrying", "dead") for t in svc.tasks.list(status=status, limit=5)[0]
        ]
    finally:
        svc.close()
    if args.json:
        print(
            json.dumps(
                {"queues": stats, "workers": workers, "recent_failures": failing},
                indent=2,
                default=str,
            )
        )
        return 0
    cols = ("scheduled", "queued", "running", "retrying", "dead")
    print(f"{'queue':<24}" + "".join(f"{c:>11}" for c in cols) + f"{'unrecorded':>12}  flags")
    for name, d in sorted(stats.items()):
        flags = "paused" if d["meta"].get("paused") == "1" else ""
        print(
            f"{name:<24}"
            + "".join(f"{d[c]:>11}" for c in cols)
            + f"{d['unrecorded_events']:>12}  {flags}"
        )
    print(f"\nworkers: {sum(w['alive'] for w in workers)} alive of {len(workers)}")
    for w in workers:
        state = "alive" if w["alive"] else "gone "
        print(
            f"  {state} {w['worker_id']:<32} {w['mode']:<5} {','.join(w['queues']):<24} "
            f"running {len(w['running'])}"
        )
    print("\nrecent failures:" if failing else "\nrecent failures: none")
    for t in failing:
        error = (t["error"] or "").splitlines()[0][:80] if t["error"] else ""
        print(f"  {t['status']:<8} {t['id']}  {t['queue']:<16} {t['name']:<28} {error}")
    return 0


#: Dead tasks one ``dtq dlq replay`` without ids moves at most (as ``POST /dead-letter/replay``
#: with a queue).
DLQ_REPLAY_LIMIT = 10_000


def cmd_dlq(args: argparse.Namespace) -> int:
    svc = _services()
    try:
        if args.action == "list":
            tasks, _ = svc.tasks.list(status="dead", queue=args.queue, limit=args.limit)
            for t in tasks:
                print(f"{t['id']}  {t['queue']:<16} {t['name']:<32} {t['error'] or ''}")
            return 0
        ids = args.ids or svc.tasks.dead_ids(args.queue, DLQ_REPLAY_LIMIT)
        replayed = svc.tasks.replay_dead(ids)
        skipped = len(set(ids)) - replayed
        print(
            f"replayed {replayed} task(s)" + (f"; {skipped} skipped: not dead" if skipped else "")
        )
        return 0
    finally:
        svc.close()


def cmd_user_add(args: argparse.Namespace) -> int:
    from chalicelib.core import passwords

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            raise DTQError("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise DTQError("the password must have at least 8 characters")
    svc = _services()
    try:
        svc.store.upsert_user(args.name, passwords.hash_password(password), args.role)
    finally:
        svc.close()
    print(f"user {args.name} ({args.role}) saved")
    return 0


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The ``dtq`` parser; given the ``verb`` about to run, with that verb's parser and
    as few others as it can."""
    parser = argparse.ArgumentParser(prog="dtq", description="DTQ task queue")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    sub.add_parser("migrate", help="apply migrations; create configured users").set_defaults(
        func=cmd_migrate
    )
    sub.add_parser("recover", help="rebuild Redis queue state from Postgres").set_defaults(
        func=cmd_recover
    )
    p = sub.add_parser(
        "record", help="run a standalone recorder (Redis events → Postgres) and notifier"
    )
    # Set by `dtq worker --record process` for its child.
    p.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--consumer", default=None, help=argparse.SUPPRESS)
    p.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("enqueue", help="enqueue one task")
    p.add_argument("name")
    p.add_argument("--payload", default="{}", help="JSON object")
    p.add_argument("--queue", default="default")
    p.add_argument("--priority", type=int, default=5, help="0-9, higher runs first")
    p.add_argument("--delay", type=float, default=None, metavar="SECONDS")
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("status", help="queues and their depths")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("dlq", help="the dead-letter queue")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument(
        "ids",
        nargs="*",
        help="task ids to replay (default: every dead task, "
        f"up to {DLQ_REPLAY_LIMIT}); a task that is not dead is skipped",
    )
    p.add_argument("--queue", default=None)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_dlq)

    p = sub.add_parser("user", help="manage users")
    user_sub = p.add_subparsers(dest="user_verb", required=True)
    p = user_sub.add_parser("add", help="add or update a user (password from prompt or stdin)")
    p.add_argument("name")
    p.add_argument("--role", choices=["admin", "worker"], required=True)
    p.set_defaults(func=cmd_user_add)

    # Only the module of the verb given is imported: each one's imports are start-up
    # time of every process run through this command (``dtq worker`` needs neither
    # Chalice's local server nor the dev stack). No verb, an unknown one or ``--help``
    # imports them all, so that the help and the error list every verb.
    if verb in VERB_MODULES:
        modules = [VERB_MODULES[verb]]
    elif verb in sub.choices:
        modules = []
    else:
        modules = list(dict.fromkeys(VERB_MODULES.values()))
    for module in modules:
        importlib.import_module(ROOT + module).register(sub)
    return parser


#: What this module's top-level packages are called: "" in the repository, "dtq._impl."
#: in a wheel (setup.py). Module names held in strings are built on it.
ROOT = __name__.removesuffix("workers.cli")

#: The verbs other modules own, and the module owning each; a module has
#: ``register(subparsers)`` adding the parsers of all its verbs.
VERB_MODULES = {
    "api": "workers.cli.serve",
    "worker": "workers.cli.worker",
    "scheduler": "schedules.runner",
    "schedules": "schedules.runner",
    "dev": "workers.devstack.stack",
    "bench": "workers.cli.bench",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(verb).parse_args(argv)
    try:
        return int(args.func(args))
    except DTQError as exc:
        print(f"dtq: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
