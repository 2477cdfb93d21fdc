"""The Postgres record follows Redis: every transition lands once, in order."""

from __future__ import annotations

import json
import logging

import psycopg
import pytest

from chalicelib.api import metrics, web
from chalicelib.core.errors import Unavailable
from chalicelib.core.models import Outcome
from chalicelib.record.store import Store, make_pool
from chalicelib.service.deps import Services
from chalicelib.service.recorder import GROUP, Recorder, join_entries

NO_WAIT = {"base_seconds": 0, "factor": 1, "max_seconds": 0, "jitter": False}


def test_ten_thousand_tasks_recorded_with_one_terminal_status_each(services: Services) -> None:
    n = 10_000
    bodies = [
        {"name": "t", "payload": {"i": i}, "max_attempts": 2, "backoff": NO_WAIT} for i in range(n)
    ]
    tasks = services.tasks.enqueue_many(bodies)
    recorder = Recorder(services.queue, services.store, "test")
    expected: dict[str, str] = {}
    while True:
        claim = services.queue.claim(["default"], "w", 100, 30_000)
        if not claim.leases:
            if services.redis.zcard(services.keys.queue("default").retrying) == 0:
                break
            continue
        for lease in claim.leases:
            i = lease.payload["i"]
            if i % 10 == 0:  # always fails: dead after 2 attempts
                services.queue.fail("default", lease.task_id, lease.lease_token, f"boom {i}")
                expected[lease.task_id] = "dead"
            elif i % 10 == 1 and lease.attempt == 1:  # fails once, then succeeds
                services.queue.fail("default", lease.task_id, lease.lease_token, "once")
            else:
                services.queue.complete("default", lease.task_id, lease.lease_token, str(i))
                expected[lease.task_id] = "succeeded"
        recorder.drain_once()  # recording runs alongside, as in a worker
    recorder.drain()
    assert len(expected) == n

    live = services.queue.live_many([("default", t["id"]) for t in tasks])
    with psycopg.connect(services.settings.database_url) as conn:
        rows = {
            str(r[0]): r[1:]
            for r in conn.execute("SELECT id, status, version, attempts, result FROM dtq_tasks")
        }
        events = {
            str(r[0]): (r[1], r[2], r[3])
            for r in conn.execute(
                "SELECT task_id, count(*), max(seq), array_agg(event ORDER BY seq) "
                "FROM dtq_task_events GROUP BY task_id"
            )
        }
    assert len(rows) == n
    for task, state in zip(tasks, live, strict=True):
        status, version, attempts, result = rows[task["id"]]
        assert state is not None
        assert status == expected[task["id"]] == state.status
        assert version == state.version
        count, max_seq, history = events[task["id"]]
        assert count == max_seq == version  # contiguous 1..v, nothing lost or doubled
        assert history[-1] == status
        assert attempts == state.attempts
        if status == "succeeded":
            assert result == int(task["payload"]["i"])
            assert history.count("claimed") == attempts
        else:
            assert history == [
                "claimed",
                "failed",
                "retrying",
                "queued",
                "claimed",
                "failed",
                "dead",
            ]


def test_recording_waits_while_postgres_is_down_and_loses_nothing(services: Services) -> None:
    task = services.tasks.enqueue("t")
    [lease] = services.queue.claim(["default"], "w", 1, 30_000).leases
    services.queue.complete("default", lease.task_id, lease.lease_token, '"ok"')
    # A store whose database does not answer: the batch fails, entries stay pending.
    dead_pool = make_pool("postgresql://postgres@127.0.0.1:1/none", timeout_s=0.5)
    down = Recorder(services.queue, Store(dead_pool), "test")
    with pytest.raises(Unavailable):
        down.drain_once()
    dead_pool.close()
    assert services.store.get_task(task["id"])["status"] == "queued"  # type: ignore[index]
    # The same consumer retries its pending batch once Postgres answers again.
    up = Recorder(services.queue, services.store, "test")
    assert up.drain() == 2
    row = services.store.get_task(task["id"])
    assert row is not None and row["status"] == "succeeded" and row["result"] == "ok"
    assert services.redis.xlen(services.keys.queue("default").events) == 0


def test_replayed_batch_is_a_no_op(services: Services) -> None:
    task = services.tasks.enqueue("t")
    [lease] = services.queue.claim(["default"], "w", 1, 30_000).leases
    services.queue.complete("default", lease.task_id, lease.lease_token, "1")
    stream = services.keys.queue("default").events
    entries = [f[b"d"] for _, f in services.redis.xrange(stream)]
    services.store.record(join_entries(entries))
    services.store.record(join_entries(entries))  # again, as after a crash before XACK
    services.store.record(join_entries(entries[:1]))  # an older batch arriving late
    assert services.store.get_task(task["id"])["status"] == "succeeded"  # type: ignore[index]
    assert [h["event"] for h in services.store.history(task["id"])] == ["claimed", "succeeded"]


def test_get_sees_live_state_before_the_recorder_catches_up(services: Services) -> None:
    task = services.tasks.enqueue("t")
    [lease] = services.queue.claim(["default"], "w9", 1, 30_000).leases
    got = services.tasks.get(task["id"])
    assert got["status"] == "running" and got["worker_id"] == "w9" and got["attempts"] == 1
    # The claim is not recorded yet; the answer shows it from the event stream, so its
    # status and history agree (docs/api.md, "Consistency of reads").
    assert [h["event"] for h in got["history"]] == ["created", "queued", "claimed"]
    Recorder(services.queue, services.store, "t").drain()
    got = services.tasks.get(task["id"])
    assert [h["event"] for h in got["history"]] == ["created", "queued", "claimed"]
    assert got["history"][-1]["worker_id"] == "w9" and got["history"][-1]["attempt"] == 1
    assert lease.fence == 1


def test_text_that_is_not_ours_survives_the_event_encoding(services: Services) -> None:
    """claim.lua and report.lua write their events by string.format: a worker id, an
    error and a result full of quotes, backslashes, newlines and non-ASCII text must
    reach Postgres exactly as they were given."""
    worker = 'w "1" \\ ☃'
    error = 'ValueError: "bad" \\ path\n\ttab ünïcödé </end>'
    result = json.dumps({"q": '"quoted"', "b": "\\", "nl": "a\nb", "u": "☃", "n": [1, 2.5]})
    task = services.tasks.enqueue("t", max_attempts=2, backoff=NO_WAIT)
    [lease] = services.queue.claim(["default"], worker, 1, 30_000).leases
    services.queue.fail("default", lease.task_id, lease.lease_token, error, retry_delay_ms=0)
    [lease] = services.queue.claim(["default"], worker, 1, 30_000).leases  # carries the error
    services.queue.complete("default", lease.task_id, lease.lease_token, result)
    Recorder(services.queue, services.store, "t").drain()
    row = services.store.get_task(task["id"])
    assert row is not None
    assert (row["status"], row["worker_id"], row["error"]) == ("succeeded", worker, error)
    assert row["result"] == json.loads(result) and row["attempts"] == 2
    history = services.store.history(task["id"])
    assert [h["event"] for h in history] == [
        "claimed",
        "failed",
        "retrying",
        "queued",
        "claimed",
        "succeeded",
    ]
    assert {h["worker_id"] for h in history if h["event"] == "claimed"} == {worker}
    assert [h["error"] for h in history if h["error"]] == [error]


def _pages(services: Services, ids: list[str]) -> dict[str, int]:
    with services.store.connection() as conn:
        rows = conn.execute(
            "SELECT id::text AS id, (ctid::text::point)[0]::int AS page FROM dtq_tasks"
            " WHERE id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
    return {r["id"]: r["page"] for r in rows}


def test_recording_updates_task_rows_on_their_own_page(services: Services) -> None:
    # dtq_tasks keeps half of each page free (fillfactor 50, migration 0001), so the
    # recorder's update of a row stays on its page: a HOT update, no new index entries
    # and no dead index entries for vacuum. With full pages (fillfactor 100) a third of
    # these rows moved, and at 9,200 tasks/s 97 % of the updates were not HOT and
    # PostgreSQL spent twice the CPU (64 % of a core against 32).
    ids = [t["id"] for t in services.tasks.enqueue_many([{"name": "t"}] * 300)]
    before = _pages(services, ids)
    assert len(set(before.values())) > 5  # several pages, each filled as far as allowed
    leases = services.queue.claim(["default"], "w", 300, 30_000).leases
    services.queue.report_many(
        [Outcome(lease.queue, lease.task_id, lease.lease_token, True, "null") for lease in leases]
    )
    Recorder(services.queue, services.store, "test").drain()
    after = _pages(services, ids)
    assert all(services.tasks.get(i, history=False)["status"] == "succeeded" for i in ids[:3])
    stayed = sum(after[i] == before[i] for i in ids)
    assert stayed >= len(ids) * 0.9, f"only {stayed} of {len(ids)} rows stayed on their page"


# -- entries PostgreSQL refuses, and conflicting replays --------------------------------

#: An event as cjson wrote a run_at of 9999-12-31 (14 significant digits): PostgreSQL
#: refuses it as a bigint. Before parking, it held up every entry read with it.
POISON = (
    '[{"id":"%s","v":1,"ev":"canceled","st":"canceled","att":0,'
    '"run":2.53402300799e+14,"fa":1765000000000,"fence":0,"at":1765000000000}]'
)


def _metrics_text(services: Services) -> str:
    """What GET /metrics serves (chalicelib.api.metrics.serve), from the test's services."""
    context = web.build(services)
    try:
        return metrics.render_text(metrics.collect(context))
    finally:
        context.close()


def _stats(services: Services, queue: str) -> dict[str, float]:
    return services.queue.stats([queue])[queue]


def _pending(services: Services, queue: str) -> int:
    return int(services.redis.xpending(services.keys.queue(queue).events, GROUP)["pending"])


def _work(services: Services, queue: str, n: int) -> list[str]:
    """Enqueue n tasks on the queue, claim them in one call and complete them one by one:
    1 + n stream entries, which record the tasks as succeeded."""
    tasks = services.tasks.enqueue_many([{"name": "t", "queue": queue}] * n)
    leases = services.queue.claim([queue], "w", n, 30_000).leases
    for lease in leases:
        services.queue.complete(queue, lease.task_id, lease.lease_token, '"ok"')
    return [t["id"] for t in tasks]


def test_an_entry_postgres_refuses_is_parked_and_the_rest_is_recorded(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    victim = services.tasks.enqueue("t", delay_seconds=3600)["id"]  # not claimed here
    good = _work(services, "default", 3)
    stream = services.keys.queue("default").events
    poison = POISON % victim
    # Among good entries of its own stream, and read in the same round as another queue's.
    poison_id = services.redis.xadd(stream, {"d": poison}).decode()
    good += _work(services, "default", 2) + _work(services, "other", 4)
    entries = services.redis.xlen(stream) + services.redis.xlen(services.keys.queue("other").events)
    with caplog.at_level(logging.WARNING, logger="dtq.recorder"):
        assert Recorder(services.queue, services.store, "test").drain() == entries
    assert all(services.store.get_task(t)["status"] == "succeeded" for t in good)  # type: ignore[index]
    assert [h["event"] for h in services.store.history(good[-1])] == ["claimed", "succeeded"]
    victim_row = services.store.get_task(victim)
    assert victim_row is not None and victim_row["status"] == "scheduled"  # event parked
    [parked] = services.store.parked()
    assert (parked["stream"], parked["queue"], parked["entry_id"]) == (stream, "default", poison_id)
    assert parked["entry"] == poison
    assert "bigint" in parked["error"] and "2.53402300799e+14" in parked["error"]
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert poison_id in line and "bigint" in line and victim in line
    for queue in ("default", "other"):
        assert services.redis.xlen(services.keys.queue(queue).events) == 0
        assert _pending(services, queue) == 0
    assert _stats(services, "default")["parked"] == 1
    text = _metrics_text(services).splitlines()
    assert 'task_parked_events_total{queue="default"} 1' in text
    assert 'task_parked_events_total{queue="other"} 0' in text
    # An entry parked before a crash that came before its XDEL is parked once, counted once.
    again_id = services.redis.xadd(stream, {"d": poison}).decode()
    assert services.store.park(
        stream=stream, queue="default", entry_id=again_id, entry=poison, error="as before the crash"
    )
    assert Recorder(services.queue, services.store, "test").drain() == 1
    assert services.redis.xlen(stream) == 0
    assert [p["error"] for p in services.store.parked()] == ["as before the crash", parked["error"]]
    assert _stats(services, "default")["parked"] == 1


def test_entries_not_written_by_our_scripts_are_parked_whatever_they_hold(
    services: Services,
) -> None:
    task = services.tasks.enqueue("t", delay_seconds=3600)["id"]  # not claimed here
    stream = services.keys.queue("default").events
    nul_escape = '[{"id":"' + task + '","v":1,"ev":"a\\u0000b","at":1}]'  # no text has NUL
    bad: list[tuple[dict[str, bytes], str, str]] = [  # fields, as stored, error
        ({"d": b"not json"}, "not json", "not a JSON array of events"),
        ({"d": b"x"}, "x", "not a JSON array of events"),  # never joined as an empty one
        ({"x": b"1"}, "{'x': '1'}", 'no "d" field'),
        (
            {"d": b'[{"id":null,"v":1,"ev":"claimed","at":1}]'},
            '[{"id":null,"v":1,"ev":"claimed","at":1}]',
            "NotNullViolation",
        ),
        ({"d": nul_escape.encode()}, nul_escape, "UntranslatableCharacter"),
        ({"d": b'[{"ev":"a\x00b\xff"}]'}, '[{"ev":"a\\x00b\\xff"}]', "Error"),
    ]
    ids = []
    for fields, _, _ in bad:
        ids.append(services.redis.xadd(stream, fields).decode())
        _work(services, "default", 1)
    assert Recorder(services.queue, services.store, "test").drain() == 3 * len(bad)
    parked = {p["entry_id"]: p for p in services.store.parked()}
    assert set(parked) == set(ids)
    for entry_id, (_, stored, error) in zip(ids, bad, strict=True):
        assert parked[entry_id]["entry"] == stored
        assert error in parked[entry_id]["error"], parked[entry_id]
    assert services.redis.xlen(stream) == 0
    assert _stats(services, "default")["parked"] == len(bad)
    assert services.store.history(task) == []  # nothing of the bad entries was recorded
    done = services.tasks.list(status="succeeded")[0]
    assert len(done) == len(bad)


def test_a_good_entry_beside_a_poison_one_is_recorded_not_parked(services: Services) -> None:
    task = services.tasks.enqueue("t")["id"]
    victim = services.tasks.enqueue("t")["id"]
    stream = services.keys.queue("default").events
    good = {
        "id": task,
        "v": 1,
        "ev": "claimed",
        "st": "running",
        "att": 1,
        "w": "w1",
        "sa": 1_764_000_000_000,
        "fence": 1,
        "at": 1_764_000_000_000,
    }
    services.redis.xadd(stream, {"d": json.dumps([good])})
    poison_id = services.redis.xadd(stream, {"d": POISON % victim}).decode()
    assert Recorder(services.queue, services.store, "up").drain() == 2
    row = services.store.get_task(task)
    assert row is not None and row["status"] == "running" and row["worker_id"] == "w1"
    assert [p["entry_id"] for p in services.store.parked()] == [poison_id]


def test_an_unreachable_or_unmigrated_database_parks_nothing(services: Services) -> None:
    [task] = _work(services, "default", 1)
    victim = services.tasks.enqueue("t")["id"]
    stream = services.keys.queue("default").events
    services.redis.xadd(stream, {"d": POISON % victim})
    # Connection refused (nothing listens on port 1): the round fails as a whole.
    dead_pool = make_pool("postgresql://postgres@127.0.0.1:1/none", timeout_s=0.5)
    with pytest.raises(Unavailable):
        Recorder(services.queue, Store(dead_pool), "test").drain_once()
    dead_pool.close()
    # A database without DTQ's tables (a schema not migrated) is not a refused entry either.
    base = services.settings.database_url.rsplit("/", 1)[0]
    bare_pool = make_pool(f"{base}/postgres", timeout_s=2)
    with pytest.raises(psycopg.errors.UndefinedTable):
        Recorder(services.queue, Store(bare_pool), "test").drain_once()
    bare_pool.close()
    assert services.redis.xlen(stream) == _pending(services, "default") == 3
    assert services.store.parked() == []
    assert services.store.get_task(task)["status"] == "queued"  # type: ignore[index]
    # The same consumer's pending entries are recorded (and one parked) once it answers.
    assert Recorder(services.queue, services.store, "test").drain() == 3
    assert services.store.get_task(task)["status"] == "succeeded"  # type: ignore[index]
    assert len(services.store.parked()) == 1 and services.redis.xlen(stream) == 0


def test_a_replay_is_silent_and_a_conflicting_one_is_logged_and_counted(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    [task] = _work(services, "default", 1)
    stream = services.keys.queue("default").events
    entries = [f[b"d"] for _, f in services.redis.xrange(stream)]
    recorder = Recorder(services.queue, services.store, "test")
    assert recorder.drain() == 2
    with caplog.at_level(logging.WARNING, logger="dtq.recorder"):
        # The same entries again, as after a crash between the commit and the XACK.
        for raw in entries:
            services.redis.xadd(stream, {"d": raw})
        assert recorder.drain() == 2
        assert caplog.records == []
        assert "history_conflicts" not in _stats(services, "default")
        # Transition 1 once more, but another one: two transitions given one number.
        [claimed] = json.loads(entries[0])
        other = {**claimed, "ev": "lease_expired", "at": claimed["at"] + 5000}
        services.redis.xadd(stream, {"d": json.dumps([other])})
        assert recorder.drain() == 1
    [line] = [r.getMessage() for r in caplog.records]
    assert task in line and "claimed" in line and "lease_expired" in line
    assert [h["event"] for h in services.store.history(task)] == ["claimed", "succeeded"]
    assert services.store.get_task(task)["status"] == "succeeded"  # type: ignore[index]
    assert _stats(services, "default")["history_conflicts"] == 1
    assert 'task_history_conflicts_total{queue="default"} 1' in _metrics_text(services).split("\n")
    assert services.store.parked() == []
