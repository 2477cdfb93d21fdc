"""The public ``dtq`` API against real Redis, PostgreSQL and workers, over both
connections (in the network and HTTP): one contract, so both behave alike."""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

import dtq
from chalicelib.core.settings import Settings
from chalicelib.service.deps import Services
from dtq._connection import Connection, HttpConnection
from tests.client import tasks_app
from tests.workers.procs import Proxy

ROOT = Path(__file__).resolve().parents[2]


def test_enqueue_runs_on_a_worker_and_result_waits_for_it(conn: Connection, worker: None) -> None:
    ref = tasks_app.add.enqueue({"a": 2, "b": 3}, via=conn)
    assert ref.result(timeout=30) == 5
    task = ref.get()
    assert (task["status"], task["queue"], task["max_attempts"]) == ("succeeded", "client", 2)
    assert [e["event"] for e in task["history"]][-1] == "succeeded"
    assert ref.status() == "succeeded"


def test_a_call_overrides_the_task_options(conn: Connection) -> None:
    ref = tasks_app.add.enqueue({"a": 1, "b": 1}, via=conn, queue="other", priority=9)
    task = ref.get()
    assert (task["queue"], task["priority"], task["max_attempts"]) == ("other", 9, 2)
    assert ref.cancel() is True  # nobody serves "other": canceled at once


def test_a_dead_task_raises_task_failed_with_its_error(conn: Connection, worker: None) -> None:
    ref = tasks_app.boom.enqueue({"n": 7}, via=conn)
    with pytest.raises(dtq.TaskFailed) as err:
        ref.result(timeout=30)
    assert "ValueError: boom 7" in err.value.task["error"]
    assert err.value.task["status"] == "dead"


def test_a_canceled_task_raises_task_canceled(conn: Connection) -> None:
    ref = tasks_app.add.enqueue({"a": 1, "b": 2}, via=conn, delay_seconds=3600)
    assert ref.cancel() is True
    with pytest.raises(dtq.TaskCanceled):
        ref.result(timeout=5)


def test_result_times_out_on_a_task_that_does_not_finish(conn: Connection) -> None:
    ref = tasks_app.add.enqueue({"a": 1, "b": 2}, via=conn, delay_seconds=3600)
    with pytest.raises(TimeoutError, match="still scheduled"):
        ref.result(timeout=0.5)


def test_enqueue_many_is_one_call_and_every_ref_reads_its_task(
    conn: Connection, worker: None
) -> None:
    refs = tasks_app.add.enqueue_many([{"a": i, "b": i} for i in range(5)], via=conn)
    assert [r.result(timeout=30) for r in refs] == [0, 2, 4, 6, 8]
    assert len({r.id for r in refs}) == 5


def test_bad_options_are_refused_before_anything_is_sent(
    conn: Connection, services: Services
) -> None:
    options: dict[str, Any] = {"prority": 3}
    with pytest.raises(TypeError, match="prority"):
        tasks_app.add.enqueue({}, via=conn, **options)
    with pytest.raises(dtq.ValidationError) as err:
        tasks_app.add.enqueue({}, via=conn, priority=12)
    assert [d["field"] for d in err.value.details] == ["priority"]
    with pytest.raises(dtq.ValidationError):
        tasks_app.add.enqueue_many([{"a": 1}, {"bad": "\x00"}], via=conn)
    assert services.tasks.list()[0] == []  # nothing was written


def test_an_unknown_option_at_the_decorator_is_a_type_error() -> None:
    options: dict[str, Any] = {"retries": 3}
    with pytest.raises(TypeError, match="retries"):
        dtq.task("client.typo", **options)(lambda payload: None)


def test_a_task_called_directly_runs_here() -> None:
    assert tasks_app.add({"a": 20, "b": 22}, None) == 42  # type: ignore[arg-type]  # no ctx used
    assert tasks_app.bare.name == "tests.client.tasks_app.bare"


def test_an_idempotency_key_makes_a_repeated_create_the_same_task(conn: Connection) -> None:
    first = tasks_app.add.enqueue({"a": 1, "b": 1}, via=conn, idempotency_key="k-1")
    again = tasks_app.add.enqueue({"a": 1, "b": 1}, via=conn, idempotency_key="k-1")
    assert first.id == again.id
    with pytest.raises(dtq.Conflict):
        tasks_app.add.enqueue({"a": 9, "b": 9}, via=conn, idempotency_key="k-1")


def test_http_creates_carry_a_key_of_their_own_so_a_retry_is_harmless(
    api_url: str, settings: Settings
) -> None:
    conn = HttpConnection(api_url, username="admin", password=settings.admin_password)
    ref = tasks_app.add.enqueue({"a": 1, "b": 1}, via=conn)
    key = ref.get()["idempotency_key"]
    assert key.startswith("auto:")
    body = tasks_app.add.body({"a": 1, "b": 1}, idempotency_key=key)
    assert conn.create(body)["id"] == ref.id  # what a retry after a lost answer sends
    conn.close()


def test_a_worker_token_gets_forbidden_with_the_servers_message(
    api_url: str, settings: Settings
) -> None:
    admin = HttpConnection(api_url, username="admin", password=settings.admin_password)
    ref = tasks_app.add.enqueue({"a": 1, "b": 1}, via=admin)
    as_worker = HttpConnection(api_url, username="worker", password=settings.worker_password)
    with pytest.raises(dtq.Forbidden, match="only a task it currently holds"):
        as_worker.get(ref.id)
    with pytest.raises(dtq.Forbidden):
        as_worker.cancel(ref.id)
    admin.close()
    as_worker.close()


def test_connect_makes_the_default_connection_of_the_process(
    settings: Settings, services: Services
) -> None:
    conn = dtq.connect(
        redis_url=settings.redis_url,
        database_url=settings.database_url,
        env={"DTQ_KEY_PREFIX": settings.key_prefix},
    )
    try:
        ref = tasks_app.add.enqueue({"a": 1, "b": 1}, delay_seconds=60)
        assert ref.connection is conn
        assert services.tasks.get(ref.id)["status"] == "scheduled"
    finally:
        conn.close()


def _mypy(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".venv/bin/mypy"), "--strict", "--no-incremental", str(folder)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,  # where mypy finds the dtq package, as an installed one would be found
    )


def test_the_readme_python_type_checks(tmp_path: Path) -> None:
    """What users copy from README must pass mypy --strict against the shipped types:
    the tasks module into myapp/tasks.py, the producer beside it."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    project = tmp_path / "project"
    (project / "myapp").mkdir(parents=True)
    (project / "myapp" / "__init__.py").write_text("")
    written = []
    for i, block in enumerate(b for b in blocks if "dtq" in b):
        name = "myapp/tasks.py" if block.startswith("# myapp/tasks.py") else f"producer_{i}.py"
        (project / name).write_text(block)
        written.append(name)
    assert "myapp/tasks.py" in written and len(written) >= 2, written
    done = _mypy(project)
    assert done.returncode == 0, done.stdout
    producer = project / written[-1]
    producer.write_text(producer.read_text().replace("priority=7", "prority=7"))
    done = _mypy(project)
    assert done.returncode == 1 and "prority" in done.stdout, done.stdout


def test_a_wait_answers_when_the_task_becomes_final(conn: Connection) -> None:
    """The wait follows the event stream: a cancel made while it blocks ends it with the
    final task (a wait that only timed out would still show it scheduled)."""
    ref = tasks_app.add.enqueue({"a": 1, "b": 2}, via=conn, delay_seconds=3600)
    canceler = threading.Timer(0.3, ref.cancel)
    canceler.start()
    task = conn.wait(ref.id, 15)
    canceler.join()
    assert task["status"] == "canceled"
    assert [e["event"] for e in task["history"]][-1] == "canceled"


def test_the_wait_parameter_is_checked(api_url: str, settings: Settings) -> None:
    conn = HttpConnection(api_url, username="admin", password=settings.admin_password)
    ref = tasks_app.add.enqueue({"a": 1, "b": 1}, via=conn)
    for bad in ("abc", "21", "-1"):
        status, reply = conn.session.call("GET", f"/tasks/{ref.id}?wait={bad}")
        assert status == 400 and reply["error"]["details"][0]["field"] == "wait"
    conn.close()


def test_the_public_surface_is_small_and_every_name_resolves() -> None:
    assert len(dtq.__all__) <= 26
    for name in dtq.__all__:
        assert getattr(dtq, name) is not None
    with pytest.raises(AttributeError):
        dtq.Services  # type: ignore[attr-defined]  # noqa: B018 -- private, not exported


def test_http_calls_ride_out_an_unreachable_api_and_create_once(
    api_url: str, settings: Settings, services: Services
) -> None:
    """The API unreachable (every connection dropped) for a moment: the create is retried
    with its idempotency key until it gets through, and makes one task; with the retries
    spent, the caller gets dtq.Unavailable."""
    port = int(api_url.rsplit(":", 1)[1])
    proxy = Proxy("127.0.0.1", port)
    conn = HttpConnection(
        f"http://127.0.0.1:{proxy.port}", username="admin", password=settings.admin_password
    )
    try:
        conn.get(tasks_app.add.enqueue({"a": 0, "b": 0}, via=conn).id)  # logged in, warm
        proxy.cut()
        healer = threading.Timer(0.3, proxy.restore)
        healer.start()
        ref = tasks_app.add.enqueue({"a": 40, "b": 2}, via=conn)
        healer.join()
        made = [t for t in services.tasks.list(limit=50)[0] if t["payload"] == {"a": 40, "b": 2}]
        assert [t["id"] for t in made] == [ref.id]
        proxy.cut()
        impatient = HttpConnection(
            f"http://127.0.0.1:{proxy.port}",
            username="admin",
            password=settings.admin_password,
            retries=1,
        )
        with pytest.raises(dtq.Unavailable):
            tasks_app.add.enqueue({"a": 1, "b": 1}, via=impatient)
        impatient.close()
    finally:
        conn.close()
        proxy.close()
