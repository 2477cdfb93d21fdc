"""The `dtq` command as a user runs it: real processes, settings from the environment."""

from __future__ import annotations

import json
import subprocess

from chalicelib.service.deps import Services
from chalicelib.service.recorder import Recorder
from tests.workers.procs import DTQ, worker_env


def dtq(
    services: Services, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**worker_env(services.settings), **(env or {})}
    return subprocess.run([DTQ, *args], env=full_env, capture_output=True, text=True, timeout=60)


def test_enqueue_status_and_dead_letters(services: Services) -> None:
    out = dtq(
        services,
        "enqueue",
        "reports.daily",
        "--payload",
        '{"day": 1}',
        "--queue",
        "cli",
        "--priority",
        "8",
    )
    assert out.returncode == 0, out.stderr
    task = json.loads(out.stdout)
    assert (task["queue"], task["priority"], task["payload"]) == ("cli", 8, {"day": 1})
    [lease] = services.queue.claim(["cli"], "w", 1, 30_000).leases
    services.queue.fail("cli", lease.task_id, lease.lease_token, "boom\ntraceback…", 0)
    Recorder(services.queue, services.store, "t").drain()  # as a worker's recorder would
    status = dtq(services, "status", "--json")
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["queues"]["cli"]["retrying"] == 1
    assert [t["id"] for t in body["recent_failures"]] == [task["id"]]
    text = dtq(services, "status").stdout
    assert "cli" in text and "boom" in text and "traceback" not in text


def test_errors_are_one_line_without_traceback(services: Services) -> None:
    bad = dtq(services, "status", env={"DTQ_REDIS_URL": "http://nope"})
    assert bad.returncode == 1
    assert (
        bad.stderr.strip()
        == "dtq: DTQ_REDIS_URL: expected redis://, rediss:// or unix://, got 'http://nope'"
    )
    bad = dtq(services, "enqueue", "t", "--payload", "{not json")
    assert bad.returncode == 1 and bad.stderr.startswith("dtq: --payload is not valid JSON")
    assert "Traceback" not in bad.stderr
    bad = dtq(services, "enqueue", "bad name!")
    assert bad.returncode == 1 and "name" in bad.stderr and "Traceback" not in bad.stderr


def test_dead_letter_list_and_replay(services: Services) -> None:
    task = services.tasks.enqueue("fragile", max_attempts=1)
    [lease] = services.queue.claim(["default"], "w", 1, 30_000).leases
    services.queue.fail("default", lease.task_id, lease.lease_token, "gone for good")
    Recorder(services.queue, services.store, "t").drain()
    listed = dtq(services, "dlq", "list")
    assert (
        listed.returncode == 0 and task["id"] in listed.stdout and "gone for good" in listed.stdout
    )
    replayed = dtq(services, "dlq", "replay", task["id"])
    assert replayed.returncode == 0 and replayed.stdout.strip() == "replayed 1 task(s)"
    [again] = services.queue.claim(["default"], "w", 1, 30_000).leases
    assert again.task_id == task["id"] and again.attempt == 1


def test_dlq_replay_skips_what_is_not_dead_like_the_http_endpoint(services: Services) -> None:
    dead = services.tasks.enqueue("t", {}, max_attempts=1)
    canceled = services.tasks.enqueue("t", {}, delay_seconds=3600)
    [lease] = services.queue.claim(["default"], "w", 1, 30_000).leases
    services.queue.fail("default", lease.task_id, lease.lease_token, "gone for good")
    services.tasks.cancel(canceled["id"])
    replayed = dtq(services, "dlq", "replay", dead["id"], canceled["id"])
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == "replayed 1 task(s); 1 skipped: not dead"
    assert services.queue.task_hash("default", canceled["id"])["st"] == "canceled"  # type: ignore[index]
    assert services.queue.task_hash("default", dead["id"])["st"] == "queued"  # type: ignore[index]
