"""procrastinate: PostgreSQL (its own database), async tasks, jobs deleted on success,
worker at concurrency 1 and 16 (the drain reports the best); batches via ``batch_defer``."""

from __future__ import annotations

from procrastinate import App, PsycopgConnector

from bench.peers.base import PgPeer, database_url, script
from bench.stamp import stamp

app = App(
    connector=PsycopgConnector(conninfo=database_url("procrastinate")),
    worker_defaults={"delete_jobs": "successful"},
)


@app.task(name="noop")
async def noop() -> None:
    return None


@app.task(name="stamp")
async def stamp_task(t0: int) -> None:
    stamp(t0)


class ProcrastinatePeer(PgPeer):
    name = "procrastinate"
    tables = ("procrastinate_jobs", "procrastinate_events", "procrastinate_periodic_defers")
    concurrencies = (1, 16)

    def __init__(self) -> None:
        super().__init__()
        self.concurrency = 1
        app.open()
        if not self.installed():
            app.schema_manager.apply_schema()

    def enqueue_noops(self, n: int) -> None:
        defer = noop.defer
        for _ in range(n):
            defer()

    def enqueue_noops_bulk(self, n: int) -> None:
        noop.batch_defer(*({} for _ in range(n)))

    def enqueue_stamp(self, t0_ns: int, *, last: bool = False) -> None:
        stamp_task.defer(t0=t0_ns)

    def worker_commands(self, processes: int) -> list[list[str]]:
        cmd = [
            script("procrastinate"),
            "--app",
            "bench.peers.procrastinate.app",
            "--log-level",
            "warning",
            "worker",
            "--concurrency",
            str(self.concurrency),
        ]
        return [cmd] * processes

    def close(self) -> None:
        app.close()
        super().close()


def make() -> ProcrastinatePeer:
    return ProcrastinatePeer()
