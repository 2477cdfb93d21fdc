"""The dashboard in a real browser, against a real ``dtq api`` and ``dtq worker``: sign-in
(a worker's credentials refused), a task seen through to ``succeeded``, values holding
markup shown as text, a dead task replayed from the page, a queue paused from the page,
the sign-in after expiry returning to the same view, and no request leaving the API's
origin. Screenshots of each main page are saved with the test's temporary files."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from chalicelib.core.settings import Settings
from tests.dashboard.conftest import Api
from tests.dashboard.tasks_app import XSS
from tests.helpers import wait_until
from tests.workers.conftest import SpawnWorker

WORKER = ("--tasks", "tests.dashboard.tasks_app", "--queues", "dash")


@pytest.fixture
def page(browser: Any, api_url: str) -> Iterator[Page]:
    """A fresh tab (1280 by 800) that records every request and every dialog."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    requests: list[str] = []
    dialogs: list[str] = []
    tab.on("request", lambda r: requests.append(r.url))
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    tab.requests = requests  # type: ignore[attr-defined]
    tab.dialogs = dialogs  # type: ignore[attr-defined]
    yield tab
    origin = urlsplit(api_url).netloc
    foreign = [u for u in requests if urlsplit(u).netloc != origin]
    context.close()
    assert not foreign, f"requests left the API's origin: {foreign}"
    assert not dialogs, f"a dialog fired: {dialogs}"


def sign_in(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], (page.url, width)  # type: ignore[index]


def open_view(page: Page, url: str, route: str) -> None:
    page.goto(f"{url}/dashboard#/{route}")


def enqueue(api: Api, name: str, payload: dict[str, Any]) -> str:
    return str(
        api.call("POST", "/tasks", {"name": name, "queue": "dash", "payload": payload})["id"]
    )


def status_of(api: Api, task_id: str) -> str:
    return str(api.call("GET", f"/tasks/{task_id}")["status"])


def test_sign_in_see_a_task_succeed_and_every_value_as_text(
    page: Page,
    api_url: str,
    api: Api,
    settings: Settings,
    spawn_worker: SpawnWorker,
    shots: Path,
) -> None:
    spawn_worker(*WORKER)
    page.goto(f"{api_url}/dashboard#/tasks")

    # A worker's credentials are refused, saying why.
    assert settings.worker_password is not None and settings.admin_password is not None
    sign_in(page, "worker", settings.worker_password)
    expect(page.get_by_role("alert").filter(has_text="admin")).to_contain_text("needs an admin")
    sign_in(page, "admin", "wrong password")
    expect(page.locator("#signin-error")).to_have_text("Wrong username or password.")

    # The admin lands on the view in the address.
    sign_in(page, "admin", settings.admin_password)
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    stored = page.evaluate("JSON.stringify(sessionStorage)")
    assert "token" in stored and page.context.cookies() == []

    task_id = enqueue(api, "dash.ok", {"text": XSS})
    wait_until(lambda: status_of(api, task_id) == "succeeded", 20, "the task to succeed")
    # Live refresh brings it into the list without a reload.
    expect(page.get_by_role("link", name=task_id)).to_be_visible(timeout=12_000)
    page.get_by_role("link", name=task_id).click()
    expect(page).to_have_url(re.compile(f"#/tasks/{task_id}$"))
    expect(page.locator(".props")).to_contain_text("succeeded")
    # Markup in the payload and the result is shown as the characters it is.
    expect(page.locator("pre").first).to_contain_text(XSS.replace('"', '\\"'))
    expect(page.locator("pre").nth(1)).to_contain_text("<img src=x onerror=alert(1)>")
    assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
    expect(page.locator(".timeline")).to_contain_text("claimed")
    expect(page.locator(".timeline")).to_contain_text("succeeded")
    page.screenshot(path=shots / "task.png", full_page=True)

    # Copy as curl: the command that enqueues the same task, the token left out.
    page.get_by_role("button", name="Copy as curl").click()
    command = page.get_by_label("curl command that enqueues this task again").input_value()
    assert command.startswith("curl ") and f"{api_url}/tasks" in command
    assert "$DTQ_TOKEN" in command and api.token not in command

    # Each main view renders, without horizontal scrolling at a desktop and a phone size.
    for route, heading in [
        ("overview", "Overview"),
        ("tasks", "Tasks"),
        ("dead-letters", "Dead letters"),
        ("queues", "Queues"),
        ("schedules", "Schedules"),
        ("workers", "Workers"),
    ]:
        open_view(page, api_url, route)
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        expect(page.locator("#live")).to_contain_text("Updated")
        no_horizontal_scroll(page)
        page.screenshot(path=shots / f"{route}.png", full_page=True)
    expect(page.locator("main")).to_contain_text("alive")
    # The creation-time filter: the address carries it, the form shows it in local time.
    open_view(page, api_url, "tasks?created_after=2099-01-01T12:00:00.000Z")
    expect(page.get_by_label("Created from")).to_have_value(re.compile("^2099-01-0[12]T"))
    expect(page.locator("main table")).to_contain_text("Nothing here.")
    open_view(page, api_url, "tasks?created_before=2099-01-01T12:00:00.000Z")
    expect(page.get_by_role("link", name=task_id)).to_be_visible()
    page.get_by_label("Created before").fill("2000-01-01T00:00")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"created_before=2000-01-0[12]T"))
    expect(page.locator("main table")).to_contain_text("Nothing here.")
    open_view(page, api_url, "overview")
    expect(page.locator("main table")).to_contain_text("dash")
    expect(page.locator(".cards")).to_contain_text("ok")
    # The last hour's charts, from the figures the server keeps: they are there after a
    # reload, and they show the task that ran (a success, a wait for its start).
    buckets = api.call("GET", "/stats/timeline?queue=dash")["buckets"]
    assert sum(b["succeeded"] for b in buckets) >= 1, buckets
    page.reload()
    throughput = page.locator("#chart-throughput svg")
    expect(throughput).to_have_attribute("role", "img")
    expect(throughput.locator("polyline.c-ok")).to_have_count(1)
    assert throughput.locator("text.tick").count() >= 4
    expect(page.locator("#chart-latency svg .c-p99").first).to_be_attached()
    expect(page.locator("#chart-latency")).to_contain_text("p99")
    tops = page.evaluate(
        "() => [...document.querySelectorAll('#chart-throughput polyline.c-ok')]"
        ".map((l) => Math.min(...l.getAttribute('points').split(' ')"
        ".map((p) => Number(p.split(',')[1]))))"
    )
    assert tops and tops[0] < 150, tops  # the success is drawn above the zero line
    page.set_viewport_size({"width": 390, "height": 844})
    for route in ("overview", f"tasks/{task_id}", "queues"):
        open_view(page, api_url, route)
        expect(page.locator("#live")).to_contain_text("Updated")
        no_horizontal_scroll(page)
    page.screenshot(path=shots / "phone-queues.png", full_page=True)

    # A schedule's preview marks the fire time that a DST gap moved.
    schedule = api.call(
        "POST",
        "/schedules",
        {
            "name": "nightly",
            "cron": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "task": {"name": "dash.ok", "queue": "dash"},
        },
    )
    page.set_viewport_size({"width": 1280, "height": 800})
    open_view(page, api_url, f"schedules/{schedule['id']}")
    expect(page.get_by_role("heading", name="Schedule nightly")).to_be_visible()
    page.get_by_label("Preview from (ISO time, empty: now)").fill("2027-03-27T00:00:00Z")
    preview = page.locator("#s-preview li")
    expect(preview.nth(1)).to_contain_text("moved by a DST gap")
    expect(preview.nth(1)).to_contain_text("2027-03-28T03:00:00+02:00")
    expect(preview.nth(0)).not_to_contain_text("DST")
    page.screenshot(path=shots / "schedule.png", full_page=True)

    # Expiry: the form comes back, and signing in returns to the same view.
    page.set_viewport_size({"width": 1280, "height": 800})
    open_view(page, api_url, "workers")
    expect(page.locator("#live")).to_contain_text("Updated")
    page.evaluate(
        "() => { const s = JSON.parse(sessionStorage.getItem('dtq.session'));"
        " s.token = 'expired'; sessionStorage.setItem('dtq.session', JSON.stringify(s)); }"
    )
    page.reload()
    expect(page.locator("#signin-error")).to_contain_text("expired")
    sign_in(page, "admin", settings.admin_password)
    expect(page.get_by_role("heading", name="Workers", exact=True)).to_be_visible()
    assert page.url.endswith("#/workers")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('dtq.session')") is None


def test_replay_a_dead_task_and_pause_a_queue_from_the_page(
    page: Page,
    api_url: str,
    api: Api,
    settings: Settings,
    spawn_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    spawn_worker(*WORKER)
    assert settings.admin_password is not None
    flag = tmp_path / "succeed-now"
    dead = enqueue(api, "dash.flaky", {"until": str(flag)})
    wait_until(lambda: status_of(api, dead) == "dead", 20, "the task to die")

    page.goto(f"{api_url}/dashboard#/dead-letters")
    sign_in(page, "admin", settings.admin_password)
    row = page.locator("tr", has=page.get_by_role("link", name=dead))
    expect(row).to_be_visible(timeout=12_000)
    # The list shows the error's first line, as text.
    expect(row).to_contain_text("not yet <img src=x onerror=alert(1)>")
    expect(row).not_to_contain_text("second line")

    flag.touch()
    page.get_by_role("button", name=f"Replay task {dead}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Replay dead task {dead}?")
    dialog.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("status")).to_have_text("1 replayed")
    wait_until(lambda: status_of(api, dead) == "succeeded", 20, "the replayed task to run")
    # The list drops it once the record has it queued again; its page tells the story.
    open_view(page, api_url, f"tasks/{dead}")
    expect(page.locator(".timeline")).to_contain_text("replayed", timeout=12_000)
    expect(page.locator(".props")).to_contain_text("succeeded")

    # Pausing from the page stops starts; resuming lets the task run.
    open_view(page, api_url, "queues")
    page.get_by_role("button", name="Pause queue dash").click()
    page.get_by_role("dialog").get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_have_text("Queue “dash” paused")
    expect(page.get_by_role("button", name="Resume queue dash")).to_be_visible()
    assert api.call("GET", "/queues/dash")["paused"] is True
    held = enqueue(api, "dash.ok", {"text": "held"})
    time.sleep(1.5)  # a worker polling the queue would have started it by now
    assert status_of(api, held) == "queued"
    page.get_by_role("button", name="Resume queue dash").click()
    page.get_by_role("dialog").get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_have_text("Queue “dash” resumed")
    wait_until(lambda: status_of(api, held) == "succeeded", 20, "the held task to run")

    # Canceling asks first; declining changes nothing.
    page.goto(f"{api_url}/dashboard#/queues/dash")
    expect(page.get_by_label("Concurrency (tasks at once, empty: no cap)")).to_be_visible()
    page.get_by_label("Concurrency (tasks at once, empty: no cap)").fill("3")
    page.get_by_role("button", name="Set concurrency").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    assert api.call("GET", "/queues/dash")["concurrency"] is None
    page.get_by_role("button", name="Set concurrency").click()
    page.get_by_role("dialog").get_by_role("button", name="Set").click()
    expect(page.get_by_role("status")).to_have_text("Concurrency of “dash”: 3")
    assert api.call("GET", "/queues/dash")["concurrency"] == 3

    # Durability: shown, and changed after a confirmation that names the trade-off.
    page.get_by_label("Durability of new tasks").select_option("queue")
    page.get_by_role("button", name="Set durability").click()
    expect(page.get_by_role("dialog")).to_contain_text("Redis data loss")
    page.get_by_role("dialog").get_by_role("button", name="Set").click()
    expect(page.get_by_role("status")).to_have_text("Durability of “dash”: queue")
    assert api.call("GET", "/queues/dash")["durability"] == "queue"


def test_create_edit_and_delete_a_schedule_from_the_page(
    page: Page, api_url: str, api: Api, settings: Settings
) -> None:
    assert settings.admin_password is not None
    page.goto(f"{api_url}/dashboard#/schedules")
    sign_in(page, "admin", settings.admin_password)
    expect(page.get_by_role("heading", name="Schedules", exact=True)).to_be_visible()
    page.get_by_text("New schedule").click()
    page.get_by_label("Name", exact=True).fill("hourly-report")
    page.get_by_label("Cron", exact=True).fill("0 * * * *")
    page.get_by_label("Time zone", exact=True).fill("Europe/Berlin")
    expect(page.locator("#n-preview li")).to_have_count(5)
    task = page.get_by_label("Task (JSON: name, queue, payload, priority, …)")
    task.fill("not json")
    page.get_by_role("button", name="Create schedule").click()
    expect(page.locator("#n-error")).to_contain_text("must be JSON")
    task.fill('{"name": "dash.ok", "queue": "dash", "payload": {"text": "hi"}}')
    page.get_by_role("button", name="Create schedule").click()
    expect(page.get_by_role("status")).to_have_text("Schedule “hourly-report” created")
    [created] = [
        s for s in api.call("GET", "/schedules")["schedules"] if s["name"] == "hourly-report"
    ]
    assert (created["cron"], created["timezone"]) == ("0 * * * *", "Europe/Berlin")
    assert created["task"]["payload"] == {"text": "hi"}

    # Its page: the next five fire times, and the task body edited.
    page.get_by_role("link", name="hourly-report").click()
    expect(page.get_by_role("heading", name="Schedule hourly-report")).to_be_visible()
    expect(page.locator(".props ol.fires li")).to_have_count(5)
    edit = page.locator("#s-task")
    expect(edit).to_have_value(re.compile('"text": "hi"'))
    edit.fill('{"name": "dash.ok", "queue": "dash", "payload": {"text": "bye"}, "priority": 7}')
    page.get_by_role("button", name="Save task").click()
    page.get_by_role("dialog").get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Task of “hourly-report” saved")
    saved = api.call("GET", f"/schedules/{created['id']}")["task"]
    assert (saved["payload"], saved["priority"]) == ({"text": "bye"}, 7)

    # Delete asks first; declining keeps it.
    open_view(page, api_url, "schedules")
    page.get_by_role("button", name="Delete schedule hourly-report").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    assert any(s["id"] == created["id"] for s in api.call("GET", "/schedules")["schedules"])
    page.get_by_role("button", name="Delete schedule hourly-report").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete schedule “hourly-report”?")
    dialog.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_have_text("Schedule “hourly-report” deleted")
    assert not any(s["id"] == created["id"] for s in api.call("GET", "/schedules")["schedules"])
    expect(page.get_by_role("link", name="hourly-report")).to_have_count(0)
