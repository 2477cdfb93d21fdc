"""The schedule endpoints through chalice.test.Client, and the scheduled functions
invoked as EventBridge would invoke them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from chalice.test import Client

from chalicelib.core.clock import utcnow
from chalicelib.service.deps import Services
from chalicelib.service.schedules import Schedules
from tests.api.conftest import Http, assert_error
from tests.schedules.conftest import body, tasks_of


def test_create_read_update_delete(admin: Http) -> None:
    r = admin.post(
        "/schedules", body("nightly", "30 2 * * *", timezone="America/New_York", overlap="skip")
    )
    assert r.status_code == 201, r.body
    created = r.json_body
    assert (created["catchup"], created["overlap"], created["enabled"]) == ("latest", "skip", True)
    next_run = datetime.fromisoformat(created["next_run_at"])
    assert next_run > utcnow() and next_run.astimezone(UTC).minute == 30
    got = admin.get(f"/schedules/{created['id']}").json_body
    assert len(got["next_fire_times"]) == 5 and got["next_fire_times"][0] == created["next_run_at"]
    assert got["last_runs"] == []
    assert admin.get("/schedules").json_body["schedules"] == [created]
    r = admin.patch(f"/schedules/{created['id']}", {"cron": "0 9 * * MON-FRI", "enabled": False})
    assert r.status_code == 200 and r.json_body["cron"] == "0 9 * * MON-FRI"
    assert r.json_body["next_run_at"] is None and r.json_body["overlap"] == "skip"
    r = admin.call("DELETE", f"/schedules/{created['id']}")
    assert r.status_code == 204 and not r.body
    assert_error(admin.get(f"/schedules/{created['id']}"), 404, "not_found")
    assert_error(admin.call("DELETE", f"/schedules/{created['id']}"), 404, "not_found")
    assert_error(admin.get("/schedules/not-a-uuid"), 404, "not_found")


def test_names_are_unique(admin: Http) -> None:
    assert admin.post("/schedules", body("a")).status_code == 201
    other = admin.post("/schedules", body("b")).json_body
    assert_error(admin.post("/schedules", body("a")), 409, "conflict")
    assert_error(admin.patch(f"/schedules/{other['id']}", {"name": "a"}), 409, "conflict")


def _field_error(r: Any, field: str) -> str:
    error = assert_error(r, 400, "validation_error")
    [detail] = [d for d in error["details"] if d["field"] == field]
    return str(detail["message"])


def test_invalid_expressions_and_zones_are_400(admin: Http) -> None:
    for expr, words in [
        ("61 * * * *", "out of range"),
        ("* * * *", "expected 5 fields"),
        ("0 0 30 2 *", "never fires"),
        ("@fortnightly", "unknown macro"),
        ("*/0 * * * *", "step"),
        ("0 0 * * L", "not a number"),
        ("", "1-256 characters"),
    ]:
        message = _field_error(admin.post("/schedules", body("x", expr)), "cron")
        assert words in message, (expr, message)
    for zone in ("Mars/Olympus", "EST5EDT/x", "../../etc/passwd", ""):
        assert _field_error(admin.post("/schedules", body("x", timezone=zone)), "timezone")
    r = admin.post("/schedules", body("x", catchup="some", overlap="never", enabled="yes"))
    fields = {d["field"] for d in assert_error(r, 400, "validation_error")["details"]}
    assert fields == {"catchup", "overlap", "enabled"}
    r = admin.post(
        "/schedules", body("x", task={"name": "t", "idempotency_key": "k", "priority": 11})
    )
    fields = {d["field"] for d in assert_error(r, 400, "validation_error")["details"]}
    assert fields == {"task.idempotency_key", "task.priority"}
    assert _field_error(admin.post("/schedules", {"name": "x", "cron": "* * * * *"}), "task")
    assert _field_error(admin.post("/schedules", {**body("x"), "color": "red"}), "color")
    created = admin.post("/schedules", body("ok")).json_body
    assert _field_error(
        admin.patch(f"/schedules/{created['id']}", {"timezone": "Nowhere/X"}), "timezone"
    )
    assert admin.get("/schedules").json_body["schedules"] == [created]


def test_schedules_are_admin_only(worker: Http, anon: Http) -> None:
    assert_error(worker.get("/schedules"), 403, "forbidden")
    assert_error(worker.post("/schedules", body("x")), 403, "forbidden")
    assert_error(anon.get("/schedules/preview?cron=*+*+*+*+*"), 401, "unauthorized")


def test_preview_follows_the_dst_rules(admin: Http) -> None:
    r = admin.get(
        "/schedules/preview?cron=30+2+*+*+*&timezone=America/New_York"
        "&after=2027-03-13T00:00:00Z&count=3"
    )
    assert r.status_code == 200, r.body
    times = [datetime.fromisoformat(t) for t in r.json_body["fire_times"]]
    assert [t.astimezone(UTC).isoformat() for t in times] == [
        "2027-03-13T07:30:00+00:00",  # EST
        "2027-03-14T07:00:00+00:00",  # 02:30 does not exist: the first instant after the gap
        "2027-03-15T06:30:00+00:00",  # EDT
    ]
    assert len(admin.get("/schedules/preview?cron=@hourly").json_body["fire_times"]) == 5
    assert _field_error(admin.get("/schedules/preview?cron=@hourly&count=101"), "count")
    assert _field_error(admin.get("/schedules/preview?cron=99+*+*+*+*"), "cron")
    assert _field_error(admin.get("/schedules/preview?cron=@daily&timezone=X/Y"), "timezone")
    assert _field_error(admin.get("/schedules/preview?cron=@daily&after=yesterday"), "after")
    assert _field_error(admin.get("/schedules/preview"), "cron")


def test_run_now_returns_the_task_and_get_shows_it(admin: Http) -> None:
    created = admin.post("/schedules", body("manual", task={"name": "t", "priority": 9})).json_body
    r = admin.post(f"/schedules/{created['id']}/run")
    assert r.status_code == 201, r.body
    task = r.json_body
    assert (task["schedule_id"], task["priority"], task["status"]) == (created["id"], 9, "queued")
    [run] = admin.get(f"/schedules/{created['id']}").json_body["last_runs"]
    assert (run["task_id"], run["status"]) == (task["id"], "queued")


def _event(client: Client, at: datetime | None = None) -> dict[str, Any]:
    event = client.events.generate_cw_event(
        source="aws.events",
        detail_type="Scheduled Event",
        detail={},
        resources=["arn:aws:events:us-east-1:123456789012:rule/dtq-dev-cron_tick"],
    )
    if at is not None:
        event["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


def test_scheduled_functions_through_the_chalice_test_client(
    client: Client, services: Services, admin: Http
) -> None:
    now = utcnow()
    schedules = Schedules(services.tasks)
    minute = now.replace(second=0, microsecond=0)
    created = schedules.create(body("tick", catchup="all"), minute - timedelta(seconds=90))
    # The event's time is in 2015: the wall clock is later, so it decides.
    report = client.lambda_.invoke("cron_tick", _event(client)).payload
    assert report["fired"] >= 2 and report["failed"] == []
    assert len(tasks_of(services, created["id"])) == report["fired"]
    # An event from ahead of the wall clock (a runner with an offset clock) fires ahead.
    ahead = client.lambda_.invoke("cron_tick", _event(client, minute + timedelta(minutes=3)))
    assert ahead.payload["fired"] >= 1
    assert client.lambda_.invoke("cron_tick", _event(client)).payload["fired"] == 0

    services.tasks.enqueue("t", {}, queue="q1")
    assert client.lambda_.invoke("reap_leases", _event(client)).payload == {"reaped": {}}
    rec = client.lambda_.invoke("reconcile", _event(client)).payload
    assert rec["restored"] == 0 and rec["unrecorded"] == [] and rec["checked"] >= 1
    assert client.lambda_.invoke("retention", _event(client)).payload == {"tasks": 0, "fires": 0}
    assert client.lambda_.invoke("record_flush", _event(client)).payload["recorded"] >= 0
