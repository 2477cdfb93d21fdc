"""``POST /tasks`` while PostgreSQL is unreachable: a real ``dtq api`` process answers
every request, concurrent ones included, with the documented 503.

PostgreSQL sits behind a TCP proxy that the test cuts once the API has served a create
(so its pools and its Redis connections are set up, as in a deployment whose database
goes away).

Concurrent single creates share commits (chalicelib/service/groupcommit.py); the ones that
arrived while a shared commit waited for PostgreSQL used to wait for a second shared
commit of their own, and answered after two connection waits (3 s) instead of one. The
time is reported, not asserted (bench-like figures do not belong in a pass/fail test):
``-s`` prints it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from chalicelib.api.auth import Role, TokenIssuer
from chalicelib.core.clock import utcnow
from chalicelib.core.settings import Settings
from tests.api.conftest import assert_error
from tests.helpers import free_port, http_json, wait_until
from tests.workers.procs import Proxy

ROOT = Path(__file__).parents[2]
CONCURRENT = 8


class Answer:
    """An HTTP answer in the shape ``assert_error`` reads."""

    def __init__(self, status: int, body: Any) -> None:
        self.status_code, self.json_body, self.body = status, body, body


@pytest.fixture
def postgres_proxy(settings: Settings) -> Iterator[Proxy]:
    target = urlsplit(settings.database_url)
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 5432)
    yield proxy
    proxy.close()


@pytest.fixture
def api(settings: Settings, postgres_proxy: Proxy, tmp_path: Path) -> Iterator[str]:
    """A ``dtq api`` whose PostgreSQL is behind the proxy; its URL."""
    port = free_port()
    parts = urlsplit(settings.database_url)
    proxied = parts._replace(netloc=f"{parts.username}@127.0.0.1:{postgres_proxy.port}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTQ_")}
    env.update(
        {
            "DTQ_REDIS_URL": settings.redis_url,
            "DTQ_KEY_PREFIX": settings.key_prefix,
            "DTQ_DATABASE_URL": urlunsplit(proxied),
            "DTQ_JWT_SECRET": str(settings.jwt_secret),
        }
    )
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "api", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: process.poll() is not None or http_json("GET", url + "/health")[0],
            20,
            "dtq api to answer",
        )
        assert process.poll() is None, log.read_text()
        yield url
    finally:
        process.kill()
        process.wait(timeout=10)


def test_post_tasks_answers_503_to_every_concurrent_caller(
    api: str, postgres_proxy: Proxy, settings: Settings
) -> None:
    issuer = TokenIssuer(str(settings.jwt_secret).encode())
    token, _ = issuer.issue("admin", Role.ADMIN, utcnow())
    assert http_json("POST", api + "/tasks", {"name": "t"}, token)[0] == 201
    postgres_proxy.cut()
    answers: list[tuple[float, Answer]] = []
    lock = threading.Lock()

    def create() -> None:
        start = time.monotonic()
        status, body = http_json("POST", api + "/tasks", {"name": "t"}, token)
        with lock:
            answers.append((time.monotonic() - start, Answer(status, body)))

    for _ in range(3):
        threads = [threading.Thread(target=create) for _ in range(CONCURRENT)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(answers) == 3 * CONCURRENT
    for _, answer in answers:
        error = assert_error(answer, 503, "unavailable")
        assert error["message"] == "PostgreSQL is unavailable"
    times = sorted(s for s, _ in answers)
    print(f"\n503 answers of {len(times)} POST /tasks: {times[0]:.2f}-{times[-1]:.2f} s")


def test_a_queue_of_durability_queue_accepts_and_shows_tasks_while_postgres_is_down(
    api: str, postgres_proxy: Proxy, settings: Settings
) -> None:
    issuer = TokenIssuer(str(settings.jwt_secret).encode())
    token, _ = issuer.issue("admin", Role.ADMIN, utcnow())
    status, queue = http_json("PATCH", api + "/queues/fast", {"durability": "queue"}, token)
    assert (status, queue["durability"]) == (200, "queue")
    postgres_proxy.cut()
    status, created = http_json("POST", api + "/tasks", {"name": "t", "queue": "fast"}, token)
    assert status == 201, created
    status, task = http_json("GET", api + f"/tasks/{created['id']}", None, token)
    assert status == 200, task
    assert (task["status"], task["queue"]) == ("queued", "fast")
    assert [e["event"] for e in task["history"]] == ["created", "queued"]
    status, canceled = http_json("POST", api + f"/tasks/{created['id']}/cancel", {}, token)
    assert (status, canceled["status"]) == (200, "canceled"), canceled
    # A queue of durability record still answers 503, as the test above shows.
    status, refused = http_json("POST", api + "/tasks", {"name": "t"}, token)
    assert_error(Answer(status, refused), 503, "unavailable")
