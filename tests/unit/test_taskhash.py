"""The task hash codec and the script reply codes are bound to the Lua that writes them:
a field renamed on one side only, or a code renumbered, fails here rather than in a
task that silently loses a field."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import resources

from chalicelib.core.models import Backoff, Lease, NewTask, TaskStatus
from chalicelib.queue import lua, taskhash
from chalicelib.queue.scripts import Code
from chalicelib.service import taskview


def _lua(name: str) -> str:
    return (resources.files(lua) / name).read_text(encoding="utf-8")


def _all_lua() -> str:
    return "\n".join(_lua(f"{n}.lua") for n in [*lua.script_names(), "_lib"])


def _calls_on_task_hash(source: str) -> list[str]:
    """The argument text of every ``redis.call('H…', task_key, …)``, across lines."""
    calls = []
    for match in re.finditer(r"redis\.call\('H[A-Z]+', task_key,", source):
        depth, i = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            i += 1
        calls.append(source[match.end() : i - 1])
    return calls


def test_reply_codes_match_the_lua_names_and_values() -> None:
    lib = _lua("_lib.lua")
    decl = re.search(r"^local (OK,[\w\s,]+?) = ([\d\s,]+)$", lib, re.MULTILINE)
    assert decl is not None, "_lib.lua no longer declares the reply codes on one line"
    names = [n.strip() for n in decl.group(1).split(",")]
    values = [int(v) for v in decl.group(2).split(",")]
    assert dict(zip(names, values, strict=True)) == {c.name: c.value for c in Code}


def test_every_field_the_scripts_touch_is_named_by_the_codec() -> None:
    statuses = {s.value for s in TaskStatus}
    touched: set[str] = set()
    for args in _calls_on_task_hash(_all_lua()):
        touched |= set(re.findall(r"'([a-z_]+)'", args)) - statuses
    assert touched, "no task-hash call found: the pattern above no longer matches the Lua"
    assert touched == taskhash.FIELDS


def test_decode_reads_every_field_it_names() -> None:
    raw = {
        b"st": b"running",
        b"v": b"4294967301",
        b"att": b"2",
        b"fence": b"4294967298",
        b"cr": b"1",
        b"wid": b"w-1",
        b"tok": b"t-9",
        b"run": b"1000",
        b"sa": b"2000",
        b"err": b"boom",
        b"res": b"[1]",
        b"bo": Backoff(2.0, 3.0, 60.0, False).encoded.encode(),
    }
    live = taskhash.decode(raw)
    assert live is not None
    assert (live.status, live.version, live.attempts, live.fence) == (
        "running",
        2**32 + 5,
        2,
        2**32 + 2,
    )
    assert live.cancel_requested and live.worker_id == "w-1" and live.lease_token == "t-9"
    assert (live.run_at_ms, live.started_ms, live.finished_ms) == (1000, 2000, None)
    assert (live.error, live.result_json) == ("boom", "[1]")
    assert live.backoff is not None and Backoff.decode(live.backoff) == Backoff(2, 3, 60, False)
    # A token outlives its run only as a retired one: a finished task shows none.
    assert taskhash.decode({**raw, b"st": b"succeeded"}).lease_token is None  # type: ignore[union-attr]
    assert taskhash.decode({}) is None


def test_every_source_of_the_view_gives_the_same_fields_in_order() -> None:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    row = {
        "id": "0193a000-0000-7000-8000-000000000001",
        "name": "t",
        "queue": "default",
        "priority": 5,
        "payload": {},
        "status": "queued",
        "attempts": 0,
        "max_attempts": 5,
        "timeout_seconds": 300,
        "backoff": Backoff().to_json(),
        "idempotency_key": None,
        "lock_key": None,
        "schedule_id": None,
        "webhook_url": None,
        "worker_id": None,
        "cancel_requested": False,
        "fence": 0,
        "run_at": now,
        "created_at": now,
        "started_at": None,
        "finished_at": None,
        "result": None,
        "error": None,
        "version": 0,
    }
    live = taskhash.decode({b"st": b"succeeded", b"v": b"3", b"res": b"7", b"fa": b"5"})
    new = NewTask(
        id=row["id"],
        name="t",
        queue="default",
        priority=5,
        payload={},
        payload_json="{}",
        max_attempts=5,
        timeout_seconds=300,
        backoff=Backoff(),
        run_at_ms=0,
        created_at_ms=0,
        scheduled=False,
    )
    lease = Lease(row["id"], "default", "t", {}, 5, 1, 5, 300, 1, "tok", 0)
    overlaid = taskview.from_record(row, live)
    assert (overlaid["status"], overlaid["result"]) == ("succeeded", 7)  # Redis is newer
    for view in (
        taskview.from_record(row),
        overlaid,
        taskview.from_new(new),
        taskview.from_lease(lease, live),
        taskview.from_lease(lease, None),
    ):
        assert tuple(view) == taskview.FIELDS
