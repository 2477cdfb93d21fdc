"""``cron.dst_note`` and the preview's ``fires``: fire times moved by a DST gap or falling
in a repeated hour are marked, the others not."""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.core import cron
from chalicelib.service.schedules import preview

NOW = datetime(2027, 1, 1, tzinfo=UTC)


def test_a_fixed_time_skipped_by_spring_forward_is_marked_gap() -> None:
    spec = cron.parse("30 2 * * *", "Europe/Berlin")
    fires = cron.next_fire_times(spec, datetime(2027, 3, 27, tzinfo=UTC), 3)
    notes = [cron.dst_note(spec, t) for t in fires]
    assert notes == [None, "gap", None]
    assert fires[1] == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)  # 03:00 CEST


def test_a_repeated_wall_time_is_marked_repeat() -> None:
    spec = cron.parse("30 2 * * *", "Europe/Berlin")
    fires = cron.next_fire_times(spec, datetime(2027, 10, 30, tzinfo=UTC), 2)
    assert [cron.dst_note(spec, t) for t in fires] == [None, "repeat"]
    hourly = cron.parse("30 * * * *", "Europe/Berlin")
    both = cron.next_fire_times(hourly, datetime(2027, 10, 31, 0, 0, tzinfo=UTC), 2)
    assert [cron.dst_note(hourly, t) for t in both] == ["repeat", "repeat"]


def test_utc_has_no_notes_and_the_preview_gives_fires() -> None:
    spec = cron.parse("*/20 * * * *", "UTC")
    assert {cron.dst_note(spec, t) for t in cron.next_fire_times(spec, NOW, 50)} == {None}
    body = preview(
        {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "after": "2027-03-27T00:00:00Z"}, NOW
    )
    assert [f["at"] for f in body["fires"]] == body["fire_times"]
    assert body["fires"][1] == {
        "at": "2027-03-28T01:00:00.000+00:00",
        "local": "2027-03-28T03:00:00+02:00",
        "dst": "gap",
    }
