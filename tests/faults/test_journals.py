"""Workers started from one folder with no ``--offline-db``: each keeps a journal of its
own, restarts mid-drain included (docs/operations.md, "One journal per worker process")."""

from __future__ import annotations

import re
import socket

from tests.faults.cluster import TASKS_MODULE, Cluster, Proc, task, wait_for


def test_two_workers_from_one_folder_each_restarted_mid_drain(cluster: Cluster) -> None:
    api = cluster.api()

    def worker(name: str) -> Proc:
        # cluster.spawn starts every process in the cluster's folder: one folder for both.
        return cluster.spawn(
            name,
            "worker",
            "--tasks",
            TASKS_MODULE,
            "--concurrency",
            "4",
            "--lease-seconds",
            "2",
            "--worker-id",
            name,
        )

    a, b = worker("a"), worker("b")

    def runs_of(pid: int) -> int:
        return sum(r.pid == pid for r in cluster.runs())

    def starts(w: Proc) -> int:
        return w.text().count(f"worker {w.name}: queues")

    def restart_mid_drain(w: Proc, ids: list[str]) -> None:
        """SIGTERM ``w`` once it ran tasks, give the other worker more to drain, and
        start ``w`` again (in the same folder) while the other drains it."""
        wait_for(lambda: runs_of(w.pid) >= 20, 30, f"{w.name} to run tasks", cluster.describe)
        assert w.terminate() == 0, w.describe()
        ids.extend(api.enqueue_batch([task(0.05) for _ in range(200)]))
        started = starts(w)
        w.start()
        wait_for(lambda: starts(w) > started, 30, f"{w.name} to start again", cluster.describe)

    ids = api.enqueue_batch([task(0.05) for _ in range(200)])
    # A start syncs the journal, and a journal shared by both workers synced the other's
    # in-flight outcomes as the starter's own (a duplicate each, 20 per start in a drain
    # of no-ops).
    restart_mid_drain(b, ids)
    restart_mid_drain(a, ids)

    report = cluster.check("two workers from one folder, each restarted mid-drain", ids)
    report.assert_clean()
    assert report.statuses == {"succeeded": len(ids)}
    with cluster.pg() as conn:
        dups = conn.execute(
            "SELECT count(*) AS n FROM dtq_task_events WHERE event = 'duplicate_result'"
        ).fetchone()
    assert dups is not None and dups["n"] == 0
    # Two files, one each; a restarted worker took its own back (the other held the
    # other), so the outcomes its predecessor left there were its to sync.
    host = re.escape(socket.gethostname())
    journals: dict[str, str] = {}
    for w in (a, b):
        assert "refused" not in w.text(), w.describe()
        taken = re.findall(rf"journal (\.dtq/journal-{host}(?:-\d+)?\.db)", w.text())
        assert len(taken) == 2 and taken[0] == taken[1], taken
        journals[w.name] = taken[0]
    assert journals["a"] != journals["b"], journals
