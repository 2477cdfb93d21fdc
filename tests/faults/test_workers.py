"""Workers hurt mid-drain: killed outright, paused past their lease, cut off from the API."""

from __future__ import annotations

from tests.faults.cluster import BACK_ONLINE, OFFLINE, Cluster, task, wait_for


def test_worker_killed_mid_drain_its_tasks_finish_on_another(cluster: Cluster) -> None:
    api = cluster.api()
    a = cluster.worker("a", concurrency=4, lease_seconds=2)
    ids = api.enqueue_batch([task(0.05) for _ in range(200)])

    def a_mid_run() -> bool:
        runs = [r for r in cluster.runs() if r.pid == a.pid]
        return len(runs) >= 20 and any(r.end is None for r in runs)

    wait_for(a_mid_run, 30, "worker a to be running tasks", cluster.describe)
    a.kill()
    cut = {r.task_id for r in cluster.runs() if r.pid == a.pid and r.end is None}
    b = cluster.worker("b", concurrency=4, lease_seconds=2)

    report = cluster.check("worker kill -9 mid-drain", ids)
    report.assert_clean()
    assert cut, "the kill cut no run short"
    # What a held when it died ran again on b, under a newer fence, after its lease expired.
    runs = cluster.runs()
    for task_id in cut:
        assert any(r.task_id == task_id and r.pid == b.pid and r.end is not None for r in runs)
    assert report.statuses == {"succeeded": len(ids)}


def test_worker_paused_past_its_lease_late_outcomes_are_refused(cluster: Cluster) -> None:
    api = cluster.api()
    a = cluster.worker("a", concurrency=4, lease_seconds=1.5)
    ids = api.enqueue_batch([task(0.3) for _ in range(60)])

    def a_running() -> set[str]:
        held = {r.task_id for r in cluster.runs() if r.pid == a.pid and r.end is None}
        return held if len(held) >= 2 else set()

    wait_for(a_running, 30, "worker a to be running tasks", cluster.describe)
    a.pause()
    held = {r.task_id for r in cluster.runs() if r.pid == a.pid and r.end is None}
    b = cluster.worker("b", concurrency=4, lease_seconds=1.5)
    # b finishes everything, a's tasks too once their leases expired, while a sleeps.
    cluster.wait_final(ids)
    a.resume()

    # README: a result reported on an expired lease is refused once another worker
    # finished the task, and noted in its history as a duplicate_result.
    def refusals() -> bool:
        with cluster.pg() as conn:
            rows = conn.execute(
                "SELECT DISTINCT task_id::text AS id FROM dtq_task_events"
                " WHERE event = 'duplicate_result'"
            ).fetchall()
        return held <= {r["id"] for r in rows}

    wait_for(refusals, 30, "a's late outcomes to be refused and recorded", cluster.describe)
    report = cluster.check("worker SIGSTOP past lease, SIGCONT", ids)
    runs = cluster.runs()
    for task_id in held:
        ran = [r for r in runs if r.task_id == task_id]
        assert {r.pid for r in ran} == {a.pid, b.pid}, ran
    refused = [f"outcome of task {t} refused: already_finished" for t in held]
    wait_for(
        lambda: all(line in a.text() for line in refused),
        30,
        "a to log its refused outcomes",
        cluster.describe,
    )
    assert report.statuses == {"succeeded": len(ids)}
    # No stale run: a prefetched task whose lease ran out while a was stopped is not
    # started with its old fence after SIGCONT (it was, before e29d9aa).
    report.assert_clean()


def test_http_worker_rides_out_an_api_outage(cluster: Cluster) -> None:
    api = cluster.api()
    w = cluster.worker("h", api=api, concurrency=4, lease_seconds=2)
    ids = api.enqueue_batch([task(0.05) for _ in range(150)])

    def w_mid_run() -> bool:
        runs = [r for r in cluster.runs() if r.pid == w.pid]
        return len(runs) >= 20 and any(r.end is None for r in runs)

    wait_for(w_mid_run, 30, "the HTTP worker to be running tasks", cluster.describe)
    api.kill()
    wait_for(lambda: OFFLINE in w.text(), 30, "the worker to go offline", cluster.describe)
    # Offline, it finishes what it holds and journals the outcomes; meanwhile its leases
    # run out (Redis's clock goes on).
    wait_for(
        lambda: all(r.end is not None for r in cluster.runs()),
        30,
        "the held tasks to finish offline",
        cluster.describe,
    )
    wait_for(cluster.leases_expired, 30, "the worker's leases to expire", cluster.describe)
    offline_done = {r.task_id for r in cluster.runs() if r.pid == w.pid}
    api.restart()

    report = cluster.check("HTTP worker, API killed and back", ids)
    report.assert_clean()
    assert BACK_ONLINE in w.text()
    # README: a result reported on an expired lease is accepted while nobody finished the
    # task since; the worker syncs its journal before it claims again, so the outcomes
    # it journaled offline are accepted and nothing it ran offline runs twice.
    runs = cluster.runs()
    assert all(sum(r.task_id == t for r in runs) == 1 for t in offline_done)
    assert report.statuses == {"succeeded": len(ids)}
