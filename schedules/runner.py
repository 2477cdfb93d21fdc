"""``dtq scheduler``: the local stand-in for EventBridge (``chalice local`` runs no
``@app.schedule`` function).

It reads the app's scheduled functions from ``app.event_sources`` (the same list Chalice
turns into EventBridge rules when it deploys), parses each one's ``rate(...)`` or
``cron(...)`` expression, and invokes the function on time, in process, through
``app.handler_map`` with the event EventBridge would deliver. Each function runs in its
own thread, so a long recorder flush never delays the cron tick.

The cron tick runs every second here (``--every cron_tick=1``) rather than AWS's
1-minute floor, so schedules fire within a second of their time. Several instances may
run at once: exactly-once fires come from the database, not from this process.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from chalicelib.core import cron
from chalicelib.core.clock import utcnow
from chalicelib.core.errors import ConfigError, DTQError
from workers import registry

log = logging.getLogger("dtq.scheduler")

Clock = Callable[[], datetime]

#: DTQ's Chalice app, app.py of the repository (in a wheel: dtq._impl.app, setup.py).
DEFAULT_APP = __name__.removesuffix("schedules.runner") + "app"

#: Local periods that differ from the deployed expression: the cron tick every second.
DEFAULT_EVERY = {"cron_tick": 1.0}
#: What each invocation is told it may take (``lambda_timeout`` in .chalice/config.json).
LAMBDA_TIMEOUT_S = 30
#: Longest uninterrupted wait, so that a stop or a jump of the clock is noticed.
MAX_WAIT_S = 0.5
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}
_AWS_CRON = re.compile(r"cron\((.+)\)")


@dataclass(frozen=True)
class Timer:
    """One scheduled function: a fixed period, or an AWS cron expression."""

    name: str
    expression: str
    period_s: float | None = None
    spec: cron.CronSpec | None = None

    def next_after(self, now: datetime) -> datetime:
        if self.period_s is not None:
            return now + timedelta(seconds=self.period_s)
        assert self.spec is not None
        return cron.next_fire_times(self.spec, now, 1)[0]


def parse_expression(name: str, expression: str, every_s: float | None = None) -> Timer:
    """``rate(5 minutes)`` or AWS's 6-field ``cron(0 3 ? * MON-FRI *)`` (UTC)."""
    if every_s is not None:
        return Timer(name, expression, period_s=every_s)
    if m := _RATE.fullmatch(expression):
        return Timer(name, expression, period_s=int(m.group(1)) * _UNIT_S[m.group(2).rstrip("s")])
    if m := _AWS_CRON.fullmatch(expression):
        return Timer(name, expression, spec=cron.parse(aws_cron_to_standard(m.group(1)), "UTC"))
    raise ConfigError(f"{name}: unsupported schedule expression {expression!r}")


def aws_cron_to_standard(fields_text: str) -> str:
    """AWS cron (minutes hours day-of-month month day-of-week year, day-of-week 1-7 =
    SUN-SAT, ``?`` for "any") → the 5-field expression ``cron.parse`` reads."""
    fields = fields_text.split()
    if len(fields) != 6:
        raise ConfigError(f"cron({fields_text}): AWS cron expressions have 6 fields")
    minute, hour, dom, month, dow, year = fields
    if year not in ("*", "?"):
        raise ConfigError(f"cron({fields_text}): only '*' is supported for the year locally")
    if any(c in dom + dow for c in "LW#"):
        raise ConfigError(f"cron({fields_text}): L, W and # are not supported locally")
    # AWS numbers days 1 (SUN) to 7 (SAT); standard cron 0 to 6. Steps keep their value.
    dow = re.sub(r"(?<![/\d])\d+", lambda d: str(int(d.group()) - 1), dow)
    return " ".join("*" if f == "?" else f for f in (minute, hour, dom, month, dow))


def scheduled_event(rule: str, at: datetime, region: str = "us-east-1") -> dict[str, Any]:
    """The event EventBridge delivers for a scheduled rule (as chalice's test client's
    ``generate_cw_event`` builds it): ``time`` is the trigger time, to the second."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:000000000000:rule/dtq-{rule}"],
        "detail": {},
    }


class Runner:
    """Invokes the app's scheduled functions on time until ``stop`` is set."""

    def __init__(self, app: Any, jobs: list[Timer], clock: Clock, stop: threading.Event) -> None:
        self.app = app
        self.jobs = jobs
        self.clock = clock
        self.stop = stop

    def invoke(self, job: Timer, at: datetime) -> Any:
        from chalice.local import LambdaContext

        context = LambdaContext(job.name, memory_size=512, max_runtime_ms=LAMBDA_TIMEOUT_S * 1000)
        return self.app.handler_map[job.name](scheduled_event(job.name, at), context)

    def loop(self, job: Timer) -> None:
        # Rate functions run once at start (a restarted scheduler reaps and reconciles at
        # once), then every period; cron functions at their next fire time.
        due = self.clock() if job.period_s is not None else job.next_after(self.clock())
        while not self.stop.is_set():
            wait = (due - self.clock()).total_seconds()
            if wait > 0:
                self.stop.wait(min(wait, MAX_WAIT_S))
                continue
            try:
                self.invoke(job, due)
            except Exception:  # a failing function must not stop the schedule
                log.exception("scheduled function %s failed", job.name)
            # Like EventBridge, missed periods are not made up for: the next one counts.
            due = max(job.next_after(due), self.clock()) if job.period_s else job.next_after(due)

    def run(self) -> None:
        threads = [
            threading.Thread(target=self.loop, args=(job,), name=f"sched-{job.name}", daemon=True)
            for job in self.jobs
        ]
        for t in threads:
            t.start()
        self.stop.wait()
        # A function that is running finishes (each bounds itself, as in Lambda).
        deadline = time.monotonic() + LAMBDA_TIMEOUT_S
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))


def jobs_of(app: Any, every: dict[str, float]) -> list[Timer]:
    """The app's scheduled functions (``app.event_sources``), with local periods."""
    from chalice.app import ScheduledEventConfig

    jobs = []
    for source in app.event_sources:
        if isinstance(source, ScheduledEventConfig):
            expr = source.schedule_expression
            text = expr if isinstance(expr, str) else expr.to_string()
            jobs.append(parse_expression(source.name, text, every.get(source.name)))
    unknown = set(every) - {j.name for j in jobs}
    if unknown:
        raise ConfigError(f"--every: the app has no scheduled function {sorted(unknown)[0]!r}")
    return jobs


def _every(values: list[str]) -> dict[str, float]:
    every = dict(DEFAULT_EVERY)
    for value in values:
        name, _, seconds = value.partition("=")
        try:
            every[name] = float(seconds)
        except ValueError:
            raise ConfigError(f"--every {value!r}: expected NAME=SECONDS") from None
        if every[name] <= 0:
            raise ConfigError(f"--every {value!r}: SECONDS must be positive")
    return every


def cmd_scheduler(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    registry.use_import_path(args.path or ["."])
    module = registry.import_module(args.app, "--app")
    try:
        app = module.app
    except AttributeError:
        raise DTQError(f"--app {args.app!r}: the module has no `app`") from None
    # Chalice gives the app's logger (named after the app: "dtq", the parent of every DTQ
    # logger) its own handler at level ERROR; here the jobs' INFO lines are wanted, once.
    app.log.setLevel(logging.INFO)
    app.log.propagate = False
    jobs = jobs_of(app, _every(args.every))
    if not args.list:
        from chalicelib.api import web
        from chalicelib.service import deps

        deps.check_redis(web.current().services)
    if args.list:
        for job in jobs:
            period = f"every {job.period_s:g} s" if job.period_s else "on its cron (UTC)"
            print(f"{job.name:<20} {job.expression:<28} {period}")
        return 0
    offset = timedelta(seconds=args.clock_offset)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("stopping (signal %d)", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("scheduler: %s", ", ".join(f"{j.name} {j.expression}" for j in jobs))
    Runner(app, jobs, lambda: utcnow() + offset, stop).run()
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "scheduler", help="run the app's scheduled functions on time (EventBridge locally)"
    )
    p.add_argument(
        "--app",
        default=DEFAULT_APP,
        help=f"module holding the Chalice app (default: DTQ's own, {DEFAULT_APP})",
    )
    p.add_argument(
        "--path",
        action="append",
        default=None,
        metavar="DIR",
        help="a folder to import --app from, put first on the import path; repeat for "
        "more (default: the current folder)",
    )
    p.add_argument(
        "--every",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="run a function at this period instead of its expression (default: cron_tick=1)",
    )
    p.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="tick as if the clock were this far ahead (demos and tests)",
    )
    p.add_argument("--list", action="store_true", help="print the functions and exit")
    p.set_defaults(func=cmd_scheduler)
    from schedules import as_code

    as_code.register(subparsers)
