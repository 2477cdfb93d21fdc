"""Fire-time maths for recurring schedules: pure functions, no I/O, never reads the clock.

Expressions: standard 5-field cron (minute hour day-of-month month day-of-week) with ``*``,
numbers, ranges, ``/n`` steps (``a/n`` = ``a-max/n``), lists, JAN-DEC/SUN-SAT names, 0 or 7
for Sunday, and ``@hourly @daily @midnight @weekly @monthly @yearly @annually``. Seconds or
year fields and the non-standard ``L W # ? H`` are rejected. As in Vixie cron, a day matches
either day field when both are restricted, and both when either starts with ``*``.

DST contract: times are computed in the schedule's IANA zone and returned in UTC.
* Fixed hour (any hour field but those below) follows the wall clock, so that ``30 2 * * *``
  runs once a day whatever the clocks do: a wall time skipped by DST fires once at the first
  instant after the gap, a repeated one once at its first occurrence.
* Interval-like hour (``*``, ``*/n``, ``0-23``, ``0-23/n``; so ``@hourly``) follows elapsed
  time: every instant whose local wall time matches fires, so a repeated hour fires twice and
  a skipped one never (``*/15 * * * *`` in New York: 92 fires on the spring-forward day, 100
  on the fall-back day). ``*/2`` fires on the even local hours that actually occur.

Catch-up: GRACE is 30 s. It must be under the 60 s between the fires of a minutely schedule,
or such a schedule would always have a fire within grace and ``none`` could not tell a tick
a few seconds late from a long outage; 30 s still covers ordinary scheduler lag. With
``* * * * *``, last fire 12:00 and now 12:10:45, ``all`` gives 12:01..12:10 (10), ``latest``
12:10, and ``none`` nothing, since 12:10 is 45 s old.
"""

from __future__ import annotations

import heapq
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import chain, islice, takewhile
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.core.errors import ValidationError

GRACE = timedelta(seconds=30)
MAX_CATCHUP = 1000
MAX_EXPR_LENGTH = 256
CATCHUP_MODES = ("all", "latest", "none")

_MACROS = {"@hourly": "0 * * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *"}
_MACROS |= dict.fromkeys(("@daily", "@midnight"), "0 0 * * *")
_MACROS |= dict.fromkeys(("@yearly", "@annually"), "0 0 1 1 *")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_PART = re.compile(r"(?:\*|([0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?)(?:/([0-9]+))?")
_INTERVAL_HOURS = re.compile(r"(?:\*|0-23)(?:/[0-9]+)?")
_MINUTE, _DAY, _ZERO = timedelta(minutes=1), timedelta(days=1), timedelta(0)
_END = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class CronSpec:
    expr: str
    tz: ZoneInfo
    interval_like: bool
    minutes: tuple[int, ...] = field(repr=False)
    hours: tuple[int, ...] = field(repr=False)
    days: frozenset[int] = field(repr=False)
    months: frozenset[int] = field(repr=False)
    weekdays: frozenset[int] = field(repr=False)  # 0 = Sunday
    day_and: bool = field(repr=False)


def _invalid(name: str, message: str) -> ValidationError:
    return ValidationError(f"Invalid {name}: {message}", [{"field": name, "message": message}])


def parse(expr: str, timezone: str) -> CronSpec:
    if not isinstance(expr, str) or not expr.strip():
        raise _invalid("cron", "the cron expression is empty")
    if len(expr) > MAX_EXPR_LENGTH:
        raise _invalid("cron", f"the cron expression is longer than {MAX_EXPR_LENGTH} characters")
    text = " ".join(expr.split())
    if text.startswith("@") and text.lower() not in _MACROS:
        raise _invalid("cron", f"unknown macro {text!r}; use one of {', '.join(_MACROS)}")
    parts = _MACROS.get(text.lower(), text).split(" ")
    if len(parts) != 5:
        got = f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
        raise _invalid("cron", f"{got}; seconds and year fields are not supported")
    minutes, hours, days, months, weekdays = (
        _field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)
    )
    day_and = parts[2].startswith("*") or parts[4].startswith("*")
    if day_and and all(min(days) > _MONTH_DAYS[month - 1] for month in months):
        names = ", ".join(_MONTHS[month - 1].title() for month in sorted(months))
        raise _invalid("cron", f"never fires: day-of-month {min(days)} never occurs in {names}")
    return CronSpec(
        expr=text,
        tz=_zone(timezone),
        interval_like=_INTERVAL_HOURS.fullmatch(parts[1]) is not None,
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=days,
        months=months,
        weekdays=frozenset(day % 7 for day in weekdays),
        day_and=day_and,
    )


def _field(text: str, name: str, lo: int, hi: int, names: tuple[str, ...]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        match = _PART.fullmatch(part)
        if match is None:
            raise _invalid("cron", f"{name} field {text!r}: cannot parse {part!r}")
        start, end, step = match.groups()
        first = lo if start is None else _value(start, name, lo, hi, names)
        last = _value(end, name, lo, hi, names) if end else hi if start is None or step else first
        if first > last:
            raise _invalid("cron", f"{name} range {part!r} runs backwards")
        stride = int(step or 1)
        if not 1 <= stride <= hi - lo + 1:
            raise _invalid("cron", f"{name} step in {part!r} must be 1-{hi - lo + 1}")
        values.update(range(first, last + 1, stride))
    return frozenset(values)


def _value(token: str, name: str, lo: int, hi: int, names: tuple[str, ...]) -> int:
    if token.isdigit():
        value = int(token)
    elif token.upper() in names:
        value = names.index(token.upper()) + lo
    else:
        known = f" or a name {names[0]}-{names[-1]}" if names else ""
        raise _invalid("cron", f"{name} value {token!r} is not a number{known}")
    if not lo <= value <= hi:
        raise _invalid("cron", f"{name} value {value} is out of range {lo}-{hi}")
    return value


def _zone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name or len(name) > 64:
        raise _invalid("timezone", "the time zone must be an IANA name such as Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise _invalid("timezone", f"unknown IANA time zone {name!r}") from exc


def next_fire_times(spec: CronSpec, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times strictly after ``after``, increasing, in UTC."""
    return list(islice(_fires(spec, _aware(after)), max(count, 0)))


def dst_note(spec: CronSpec, instant: datetime) -> str | None:
    """How DST shaped a fire time: ``"gap"`` (its wall time was skipped, so it fires at
    the first instant after the gap), ``"repeat"`` (its wall time happens twice that
    day), or None."""
    local = _aware(instant).astimezone(spec.tz)
    wall = local.replace(tzinfo=None)
    first = wall.replace(tzinfo=spec.tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=spec.tz, fold=1).astimezone(UTC)
    if first != second:
        return "repeat"
    if local.minute not in spec.minutes or local.hour not in spec.hours:
        return "gap"
    return None


def fire_times_between(
    spec: CronSpec, start: datetime, end: datetime, limit: int = 10000
) -> list[datetime]:
    """Fire times in (start, end], in UTC; at most the first ``limit`` of them."""
    return list(islice(_between(spec, _aware(start), _aware(end)), max(limit, 0)))


def due_fires(
    spec: CronSpec, last_fire: datetime | None, created_at: datetime, now: datetime, catchup: str
) -> list[datetime]:
    """The fire times a scheduler tick at ``now`` must enqueue, increasing, in UTC.

    The window is (last_fire, now], or (created_at, now] for a schedule that never fired;
    passing the previous tick's ``now`` as ``last_fire`` is equivalent. ``all`` returns
    every fire time in it, capped to the latest MAX_CATCHUP; ``latest`` the last one;
    ``none`` the last one only if it is at most GRACE old, else nothing.
    """
    if catchup not in CATCHUP_MODES:
        raise ValueError(f"catchup must be one of {CATCHUP_MODES}, not {catchup!r}")
    since = _aware(created_at if last_fire is None else last_fire)
    now = _aware(now)
    fires = _latest(spec, since, now, MAX_CATCHUP if catchup == "all" else 1)
    if catchup == "none" and fires and now - fires[-1] > GRACE:
        return []
    return fires


def _aware(moment: datetime) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got {moment!r}")
    return moment


def _latest(spec: CronSpec, since: datetime, now: datetime, n: int) -> list[datetime]:
    # Search backwards in widening windows so that a long outage costs about as much as
    # the fires kept, not every fire since the schedule last ran.
    found: deque[datetime] = deque()
    hi, width = now, timedelta(hours=1)
    while hi > since and len(found) < n:
        lo = since if hi - since <= width else hi - width
        window = deque(_between(spec, lo, hi), maxlen=n - len(found))
        found.extendleft(reversed(window))
        hi, width = lo, width * 8
    return list(found)


def _between(spec: CronSpec, start: datetime, end: datetime) -> Iterator[datetime]:
    return takewhile(end.__ge__, _fires(spec, start))


def _fires(spec: CronSpec, after: datetime) -> Iterator[datetime]:
    local = after.astimezone(spec.tz)
    # In the first pass through a repeated hour the second pass is still ahead, at wall
    # times earlier than now: rewind the wall clock so that those are not skipped.
    rewind = max(_offset(local) - _offset(local.replace(fold=1)), _ZERO)
    start = (local.replace(tzinfo=None) - rewind).replace(second=0, microsecond=0) + _MINUTE
    # Instants of later wall times are never below the floor of the current one, so the
    # heap only holds the few instants a repeated or skipped hour moves out of order.
    pending: list[datetime] = []
    last = after
    candidates = (_instants(spec, wall) for wall in _wall_times(spec, start))
    for floor, instants in chain(candidates, [(_END, [])]):
        for instant in instants:
            heapq.heappush(pending, instant)
        while pending and pending[0] <= floor:
            instant = heapq.heappop(pending)
            if instant > last:  # several skipped wall times share one instant
                last = instant
                yield instant


def _wall_times(spec: CronSpec, start: datetime) -> Iterator[datetime]:
    day = start.date()
    while day.year < 9999:
        if day.month not in spec.months:
            day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
            continue
        if _day_matches(spec, day):
            for hour in spec.hours:
                for minute in spec.minutes:
                    wall = datetime.combine(day, time(hour, minute))
                    if wall >= start:
                        yield wall
        day += _DAY


def _day_matches(spec: CronSpec, day: date) -> bool:
    in_month = day.day in spec.days
    in_week = day.isoweekday() % 7 in spec.weekdays
    return (in_month and in_week) if spec.day_and else (in_month or in_week)


def _instants(spec: CronSpec, wall: datetime) -> tuple[datetime, list[datetime]]:
    """The UTC instants a wall time fires at, and a floor for all later wall times."""
    first = wall.replace(tzinfo=spec.tz).astimezone(UTC)
    second = wall.replace(tzinfo=spec.tz, fold=1).astimezone(UTC)
    if first == second:
        return first, [first]
    if first < second:  # repeated
        return first, [first, second] if spec.interval_like else [first]
    # Skipped: zoneinfo maps fold=1 with the offset after the gap, an instant before it.
    return second, [] if spec.interval_like else [_gap_end(spec.tz, second, first)]


def _gap_end(tz: ZoneInfo, before: datetime, after: datetime) -> datetime:
    # zoneinfo does not expose its transitions; bisect on whole seconds, as tzdata uses.
    target = _offset(after.astimezone(tz))
    lo, hi = int(before.timestamp()), int(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(datetime.fromtimestamp(mid, tz)) == target:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _offset(moment: datetime) -> timedelta:
    return moment.utcoffset() or _ZERO
