from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.core.cron import (
    GRACE,
    MAX_CATCHUP,
    CronSpec,
    due_fires,
    fire_times_between,
    next_fire_times,
    parse,
)
from chalicelib.core.errors import ValidationError

NEW_YORK = "America/New_York"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def fires_on_local_date(spec: CronSpec, day: date) -> list[datetime]:
    midnight = datetime.combine(day, time(), spec.tz)
    window = fire_times_between(spec, midnight - timedelta(days=1), midnight + timedelta(days=2))
    return [fire for fire in window if fire.astimezone(spec.tz).date() == day]


def test_fixed_hour_skipped_by_dst_fires_once_at_the_end_of_the_gap() -> None:
    spec = parse("30 2 * * *", NEW_YORK)
    assert not spec.interval_like
    fires = fire_times_between(spec, utc(2027, 3, 12, 12), utc(2027, 3, 16))
    assert fires == [utc(2027, 3, 13, 7, 30), utc(2027, 3, 14, 7), utc(2027, 3, 15, 6, 30)]


def test_fixed_hour_wall_times_in_one_gap_fire_once() -> None:
    spec = parse("0,30 2,3 * * *", NEW_YORK)
    fires = fire_times_between(spec, utc(2027, 3, 14), utc(2027, 3, 14, 12))
    assert fires == [utc(2027, 3, 14, 7), utc(2027, 3, 14, 7, 30)]


def test_fixed_hour_repeated_by_dst_fires_at_the_first_occurrence_only() -> None:
    spec = parse("30 1 * * *", "Europe/London")
    fires = fire_times_between(spec, utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    assert fires == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    # From inside the repeated hour, the second occurrence is not a new fire.
    assert next_fire_times(spec, utc(2026, 10, 25, 0, 31), 1) == [utc(2026, 10, 26, 1, 30)]


@pytest.mark.parametrize(
    ("day", "expected"),
    [(date(2027, 3, 14), 92), (date(2026, 11, 1), 100), (date(2027, 6, 15), 96)],
)
def test_interval_like_follows_elapsed_time(day: date, expected: int) -> None:
    spec = parse("*/15 * * * *", NEW_YORK)
    assert spec.interval_like
    fires = fires_on_local_date(spec, day)
    assert len(fires) == expected
    assert all(b - a == timedelta(minutes=15) for a, b in pairwise(fires))


def test_interval_like_from_inside_the_repeated_hour_still_sees_its_second_pass() -> None:
    spec = parse("*/15 * * * *", NEW_YORK)
    # 05:50 UTC is 01:50 EDT; 01:00 EST (06:00 UTC) comes next, not 02:00.
    fires = next_fire_times(spec, utc(2026, 11, 1, 5, 50), 3)
    assert fires == [utc(2026, 11, 1, 6), utc(2026, 11, 1, 6, 15), utc(2026, 11, 1, 6, 30)]


@pytest.mark.parametrize("hours", ["*/2", "0-23", "0-23/3"])
def test_steps_over_all_hours_are_interval_like(hours: str) -> None:
    assert parse(f"0 {hours} * * *", "UTC").interval_like


@pytest.mark.parametrize("hours", ["9", "1-23/2", "0,12", "1-23"])
def test_other_hour_fields_are_fixed(hours: str) -> None:
    assert not parse(f"0 {hours} * * *", "UTC").interval_like


def test_leap_day_only() -> None:
    fires = next_fire_times(parse("0 0 29 2 *", "UTC"), utc(2026, 1, 1), 3)
    assert fires == [utc(2028, 2, 29), utc(2032, 2, 29), utc(2036, 2, 29)]


def test_weekdays_skip_weekends_across_a_dst_change() -> None:
    spec = parse("0 9 * * MON-FRI", "Europe/Berlin")
    fires = next_fire_times(spec, utc(2026, 3, 26, 12), 10)
    assert len(fires) == 10
    for fire in fires:
        local = fire.astimezone(spec.tz)
        assert local.weekday() < 5
        assert (local.hour, local.minute) == (9, 0)


def test_both_day_fields_restricted_match_either() -> None:
    fires = next_fire_times(parse("0 0 13 * FRI", "UTC"), utc(2026, 2, 1), 4)
    assert fires == [utc(2026, 2, 6), utc(2026, 2, 13), utc(2026, 2, 20), utc(2026, 2, 27)]


def test_a_starred_day_field_must_match_too() -> None:
    fires = next_fire_times(parse("0 0 */2 * MON", "UTC"), utc(2026, 2, 1), 2)
    assert fires == [utc(2026, 2, 9), utc(2026, 2, 23)]


@pytest.mark.parametrize(
    ("expr", "step"),
    [
        ("@daily", timedelta(days=1)),
        ("@midnight", timedelta(days=1)),
        ("@hourly", timedelta(hours=1)),
    ],
)
def test_macros(expr: str, step: timedelta) -> None:
    fires = next_fire_times(parse(expr, "Asia/Kolkata"), utc(2026, 5, 5, 0, 1), 50)
    assert len(fires) == 50
    assert all(fire.tzinfo is UTC for fire in fires)
    assert all(b - a == step for a, b in pairwise(fires))
    assert parse(expr.upper(), "UTC").expr == expr.upper()


@pytest.mark.parametrize(
    ("expr", "first"),
    [
        ("@weekly", utc(2026, 5, 10)),
        ("@monthly", utc(2026, 6, 1)),
        ("@yearly", utc(2027, 1, 1)),
        ("@annually", utc(2027, 1, 1)),
    ],
)
def test_sparse_macros(expr: str, first: datetime) -> None:
    assert next_fire_times(parse(expr, "UTC"), utc(2026, 5, 5), 1) == [first]


def test_previews_are_strictly_after_and_increasing() -> None:
    spec = parse("*/5 * * * *", NEW_YORK)
    fires = next_fire_times(spec, utc(2026, 11, 1, 4, 50), 100)
    assert fires[0] == utc(2026, 11, 1, 4, 55)
    assert all(a < b for a, b in pairwise(fires))
    assert next_fire_times(spec, utc(2026, 1, 1, 12), 0) == []
    assert len(fire_times_between(spec, utc(2026, 1, 1), utc(2026, 1, 2), limit=7)) == 7


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_fire_times(parse("@daily", "UTC"), datetime(2026, 1, 1), 1)


EVERY_MINUTE = parse("* * * * *", "UTC")


@pytest.mark.parametrize(("catchup", "expected"), [("all", 10), ("latest", 1), ("none", 0)])
def test_ten_minute_outage(catchup: str, expected: int) -> None:
    # The 12:00 tick fired; the scheduler was down for the ten fires 12:01..12:10 and comes
    # back at 12:10:45, when even the newest of them is older than GRACE.
    fires = due_fires(
        EVERY_MINUTE, utc(2026, 1, 1, 12), utc(2025, 1, 1), utc(2026, 1, 1, 12, 10, 45), catchup
    )
    assert len(fires) == expected
    if fires:
        assert fires[-1] == utc(2026, 1, 1, 12, 10)
        assert fires[0] == utc(2026, 1, 1, 12, 11 - expected)


@pytest.mark.parametrize("late", [timedelta(seconds=0), timedelta(seconds=5), GRACE])
def test_a_slightly_late_tick_still_fires_under_none(late: timedelta) -> None:
    now = utc(2026, 1, 1, 12, 10) + late
    fires = due_fires(EVERY_MINUTE, utc(2026, 1, 1, 12, 9), utc(2025, 1, 1), now, "none")
    assert fires == [utc(2026, 1, 1, 12, 10)]


def test_due_fires_window() -> None:
    created = utc(2026, 1, 1, 12, 0, 30)
    now = utc(2026, 1, 1, 12, 3)
    assert due_fires(EVERY_MINUTE, None, created, now, "all") == [
        utc(2026, 1, 1, 12, 1),
        utc(2026, 1, 1, 12, 2),
        utc(2026, 1, 1, 12, 3),
    ]
    assert due_fires(EVERY_MINUTE, now, created, now, "all") == []
    with pytest.raises(ValueError, match="catchup"):
        due_fires(EVERY_MINUTE, None, created, now, "some")


def test_catch_up_keeps_the_latest_thousand() -> None:
    now = utc(2026, 1, 1, 12, 0, 10)
    fires = due_fires(EVERY_MINUTE, utc(2020, 1, 1), utc(2020, 1, 1), now, "all")
    assert len(fires) == MAX_CATCHUP
    assert fires[-1] == utc(2026, 1, 1, 12)
    assert fires[0] == utc(2026, 1, 1, 12) - timedelta(minutes=MAX_CATCHUP - 1)


def test_latest_after_a_long_gap_between_fires() -> None:
    spec = parse("0 0 29 2 *", "UTC")
    assert due_fires(spec, utc(2020, 3, 1), utc(2020, 1, 1), utc(2033, 1, 1), "latest") == [
        utc(2032, 2, 29)
    ]


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("61 * * * *", "minute value 61 is out of range 0-59"),
        ("0 24 * * *", "hour value 24"),
        ("* * *", "expected 5 fields"),
        ("0 0 * * * *", "got 6"),
        ("0 0 0 * * * 2026", "got 7"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4 *", "never fires"),
        ("0 0 31 4,6,9 */2", "never fires"),
        ("hello", "expected 5 fields"),
        ("a b c d e", "minute value 'a'"),
        ("5-3 * * * *", "runs backwards"),
        ("*/0 * * * *", "step"),
        ("0 0 L * *", "day-of-month value 'L'"),
        ("0 0 * * 5#2", "cannot parse"),
        ("0 0 1,,2 * *", "cannot parse"),
        ("0 0 * FOO *", "month value 'FOO'"),
        ("@reboot", "unknown macro"),
        ("", "empty"),
        ("   ", "empty"),
        ("0," * 200 + "0 * * * *", "longer than"),
    ],
)
def test_invalid_expressions(expr: str, needle: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(expr, "UTC")
    assert caught.value.details[0]["field"] == "cron"
    assert needle in caught.value.details[0]["message"]


def test_a_day_that_exists_in_some_listed_month_is_valid() -> None:
    fires = next_fire_times(parse("0 0 31 2,3 *", "UTC"), utc(2026, 1, 1), 1)
    assert fires == [utc(2026, 3, 31)]
    assert parse("0 0 31 4 MON", "UTC")  # either day field, so Mondays in April


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "/etc/passwd", "../zoneinfo", "America"])
def test_unknown_time_zone(zone: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse("@daily", zone)
    assert [detail["field"] for detail in caught.value.details] == ["timezone"]


ZONES = [
    "UTC",
    NEW_YORK,
    "Europe/London",
    "Europe/Berlin",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Santiago",  # transitions at midnight
    "America/Sao_Paulo",
    "Asia/Kolkata",
]


def _part(lo: int, hi: int) -> st.SearchStrategy[str]:
    number = st.integers(lo, hi)
    # a < b: croniter, the oracle, reads a degenerate range such as 5-5 as *.
    ranged = st.tuples(st.integers(lo, hi - 1), st.integers(1, hi - lo)).map(
        lambda ab: f"{ab[0]}-{min(ab[0] + ab[1], hi)}"
    )
    step = st.integers(1, hi - lo + 1)
    return st.one_of(
        number.map(str),
        ranged,
        step.map(lambda n: f"*/{n}"),
        st.tuples(ranged, step).map(lambda rs: f"{rs[0]}/{rs[1]}"),
    )


def _values(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.lists(st.integers(lo, hi), min_size=1, max_size=3).map(
        lambda v: ",".join(map(str, v))
    )


def _field(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.one_of(st.just("*"), st.lists(_part(lo, hi), min_size=1, max_size=3).map(",".join))


# Day fields avoid days 29-31 (never-firing combinations) and steps or ranges: croniter, the
# oracle, disagrees with Vixie cron about whether ``*/2`` or ``1-31`` counts as ``*``.
EXPRESSIONS = st.tuples(
    _field(0, 59),
    _field(0, 23),
    st.one_of(st.just("*"), _values(1, 28)),
    _field(1, 12),
    st.one_of(st.just("*"), _values(0, 7), st.just("MON-FRI")),
).map(" ".join)
AFTER = st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC))


def _matches(expr: str, wall: datetime) -> bool:
    return bool(croniter.match(expr, wall.replace(tzinfo=None)))


def _gap_end_of_a_match(spec: CronSpec, fire: datetime) -> bool:
    """Whether ``fire`` ends a DST gap that swallowed a matching wall time."""
    after_gap = fire.astimezone(spec.tz)
    gap = _offset(after_gap) - _offset((fire - timedelta(seconds=1)).astimezone(spec.tz))
    minutes = range(int(gap / timedelta(minutes=1)))
    return any(_matches(spec.expr, after_gap - gap + timedelta(minutes=m)) for m in minutes)


def _offset(moment: datetime) -> timedelta:
    offset = moment.utcoffset()
    assert offset is not None
    return offset


@settings(max_examples=200, deadline=None, database=None)
@given(expr=EXPRESSIONS, zone=st.sampled_from(ZONES), after=AFTER, count=st.integers(1, 20))
def test_fire_times_increase_and_match(expr: str, zone: str, after: datetime, count: int) -> None:
    spec = parse(expr, zone)
    fires = next_fire_times(spec, after, count)
    assert len(fires) == count
    assert fires[0] > after
    assert all(a < b for a, b in pairwise(fires))
    for fire in fires:
        assert fire.tzinfo is UTC
        local = fire.astimezone(spec.tz)
        if spec.interval_like:
            assert _matches(expr, local)
        else:
            assert _matches(expr, local) or _gap_end_of_a_match(spec, fire)


@settings(max_examples=200, deadline=None, database=None)
@given(expr=EXPRESSIONS, after=AFTER, count=st.integers(1, 20))
def test_no_fire_time_is_missed_in_utc(expr: str, after: datetime, count: int) -> None:
    oracle = croniter(expr, after.replace(tzinfo=None))
    expected = [oracle.get_next(datetime).replace(tzinfo=UTC) for _ in range(count)]
    assert next_fire_times(parse(expr, "UTC"), after, count) == expected
