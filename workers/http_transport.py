"""The HTTP transport: a remote worker speaking the worker endpoints of docs/api.md,
through an :class:`~workers.session.ApiSession` logged in as the worker user. Network
errors, 5xx and 429 raise :class:`Unavailable`: the worker then goes offline and
journals until the API answers again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from chalicelib.core.clock import iso_ms
from chalicelib.core.errors import ConfigError, Unavailable
from chalicelib.core.models import Lease, Outcome
from workers.session import ApiSession
from workers.transport import Extended, Synced

#: Against an API without ``POST /tasks/wait``, idle workers poll at most this often.
POLL_S = 0.1
#: A progress report waits at most this long for the API (it is best effort: a handler
#: must not hang on a slow server for it).
PROGRESS_TIMEOUT_S = 2.0


def _ms(value: str) -> int:
    return int(datetime.fromisoformat(value).timestamp() * 1000)


class HttpTransport:
    mode = "http"

    def __init__(
        self, base_url: str, username: str, password: str | None, *, timeout_s: float = 10.0
    ) -> None:
        if not password:
            raise ConfigError("DTQ_WORKER_PASSWORD: required with --api")
        self.session = ApiSession(
            base_url, username=username, password=password, timeout_s=timeout_s
        )

    def _call(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        return self.session.call(method, path, body)

    # -- the Transport protocol --------------------------------------------------------

    def register(
        self, worker_id: str, queues: Sequence[str], hostname: str, concurrency: int, *, first: bool
    ) -> float:
        body = {
            "worker_id": worker_id,
            "queues": list(queues),
            "hostname": hostname,
            "concurrency": concurrency,
            "mode": self.mode,
        }
        status, reply = self._call("POST", "/workers/register", body)
        if status != 200:
            raise Unavailable(f"worker registration refused ({status}): {reply}")
        return float(reply.get("heartbeat_interval_seconds", 10))

    def deregister(self, worker_id: str) -> None:
        pass  # docs/api.md has no endpoint: the worker simply stops being seen

    def claim(
        self, worker_id: str, queues: Sequence[str], max_tasks: int, lease_ms: int
    ) -> tuple[list[Lease], int]:
        lease_s = max(1, -(-lease_ms // 1000))  # whole seconds, rounded up
        body = {
            "worker_id": worker_id,
            "queues": list(queues),
            "max": max(1, min(max_tasks, 100)),
            "lease_seconds": lease_s,
        }
        status, reply = self._call("POST", "/tasks/claim", body)
        if status != 200:
            raise Unavailable(f"claim refused ({status}): {reply}")
        return [_lease(t) for t in reply.get("tasks", [])], int(reply.get("retry_after_ms", 0))

    def extend(self, items: Sequence[tuple[Lease, int]]) -> list[Extended]:
        out = []
        for lease, ms in items:
            body = {"lease_token": lease.lease_token, "extend_seconds": max(1, -(-ms // 1000))}
            status, reply = self._call("POST", f"/tasks/{quote(lease.task_id)}/lease", body)
            if status == 200:
                canceled = bool(reply.get("cancel_requested"))
                out.append(Extended(lease.task_id, _ms(reply["lease_expires_at"]), canceled))
            elif status == 404:
                out.append(Extended(lease.task_id, lost="not_found"))
            else:
                out.append(Extended(lease.task_id, lost="lease_lost"))
        return out

    def sync(
        self, worker_id: str, reports: Sequence[Outcome], created: Sequence[dict[str, Any]]
    ) -> Synced:
        # /tasks/sync takes one worker id per request: outcomes journaled by another
        # worker (a previous owner of the journal) go in a request of their own.
        by_worker: dict[str, list[dict[str, Any]]] = {worker_id: []}
        for r in reports:
            item = {
                "id": r.task_id,
                "lease_token": r.token,
                "status": "succeeded" if r.succeeded else "failed",
                "result": json.loads(r.result_json),
                "error": r.error or None,
                "started_at": iso_ms(r.started_ms),
                "finished_at": iso_ms(r.finished_ms),
            }
            if r.retry_delay_ms is not None:
                item["retry_delay_seconds"] = r.retry_delay_ms / 1000
            by_worker.setdefault(r.worker_id or worker_id, []).append(item)
        out = Synced()
        for wid, results in by_worker.items():
            mine = wid == worker_id
            if not results and not (mine and created):
                continue
            body = {"worker_id": wid, "results": results, "created": list(created) if mine else []}
            status, reply = self._call("POST", "/tasks/sync", body)
            if status != 200:
                raise Unavailable(f"sync refused ({status}): {reply}")
            out.accepted.extend(str(i) for i in reply.get("accepted", []))
            out.rejected.extend(
                (str(x["id"]), str(x.get("reason", ""))) for x in reply.get("rejected", [])
            )
            if mine:
                # A 200 settles every created body: each one is now a task, or refused for
                # good.
                out.created.extend(str(b["idempotency_key"]) for b in created)
        return out

    def release(self, leases: Sequence[Lease]) -> None:
        # DTQ's addition to docs/api.md's minimum contract: shutdown is not a failed attempt.
        for lease in leases:
            self._call(
                "POST", f"/tasks/{quote(lease.task_id)}/release", {"lease_token": lease.lease_token}
            )

    def progress(self, lease: Lease, fraction: float, message: str) -> str | None:
        body = {"lease_token": lease.lease_token, "fraction": fraction, "message": message}
        path = f"/tasks/{quote(lease.task_id)}/progress"
        timeout_s = min(PROGRESS_TIMEOUT_S, self.session.timeout_s)
        status, reply = self.session.call("POST", path, body, timeout_s=timeout_s)
        if status == 200:
            return None
        if status == 404:  # the task is gone (or an older API without the endpoint)
            return "not_found"
        if status == 409:
            return "lease_lost"
        raise Unavailable(f"progress refused ({status}): {reply}")

    def wait_for_work(self, queues: Sequence[str], timeout_s: float) -> None:
        # A long poll on this thread's own connection: the server answers as soon as an
        # enqueue signals one of the queues.
        if timeout_s <= 0:
            return
        wait_s = min(timeout_s, 20.0, self.session.timeout_s / 2)
        body = {"queues": list(queues), "timeout_seconds": wait_s}
        status, reply = self._call("POST", "/tasks/wait", body)
        if status == 404:  # an older API without the endpoint: poll instead
            threading.Event().wait(min(timeout_s, POLL_S))
        elif status != 200:
            raise Unavailable(f"wait refused ({status}): {reply}")

    def close(self) -> None:
        self.session.close()


def _lease(t: dict[str, Any]) -> Lease:
    return Lease(
        task_id=str(t["id"]),
        queue=t["queue"],
        name=t["name"],
        payload=t.get("payload") or {},
        priority=int(t["priority"]),
        attempt=int(t["attempt"]),
        max_attempts=int(t["max_attempts"]),
        timeout_seconds=int(t["timeout_seconds"]),
        fence=int(t["fence"]),
        lease_token=str(t["lease_token"]),
        lease_expires_ms=_ms(t["lease_expires_at"]),
        lock_key=t.get("lock_key"),
    )
