"""Connections: where a producer's calls go. In the network, straight to Redis and
PostgreSQL (:class:`LocalConnection`, the task service in process); outside it, over the
HTTP API (:class:`HttpConnection`). Both give the same :class:`Connection` interface."""

from __future__ import annotations

import os
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

from chalicelib.core import errors
from chalicelib.core.errors import ApiError, TaskCanceled, TaskFailed, Unavailable
from chalicelib.core.settings import Settings
from chalicelib.core.taskspec import TASK_FIELDS, parse_task
from chalicelib.service.deps import Services, build
from workers.session import ApiSession

#: Longest single long poll of ``GET /tasks/{id}?wait=``: what the API accepts.
MAX_HTTP_WAIT_S = 20
#: Largest payload a body is checked against before it is sent: the server applies its own
#: limit (``DTQ_MAX_PAYLOAD_BYTES``) and answers 413 above it.
_LOCAL_CHECK_BYTES = 1 << 30


#: The options a task and each of its enqueues can set (``name`` and ``payload`` aside).
OPTIONS = tuple(sorted(TASK_FIELDS - {"name", "payload"}))
FINAL = ("succeeded", "dead", "canceled")


def options_of(given: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(given.keys() - set(OPTIONS))
    if unknown:
        raise TypeError(f"{where}: unknown option {unknown[0]!r} (known: {', '.join(OPTIONS)})")
    out = {k: v for k, v in given.items() if v is not None}
    if isinstance(out.get("run_at"), datetime):
        out["run_at"] = out["run_at"].isoformat()
    return out


class Enqueueable(Protocol):
    """What a connection can enqueue besides a task name: a ``dtq.Task``."""

    name: str

    def body(self, payload: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]: ...


def body_of(
    task: Enqueueable | str, payload: dict[str, Any] | None, options: dict[str, Any]
) -> dict[str, Any]:
    """The ``POST /tasks`` body of one run of a task object or of a task name."""
    if not isinstance(task, str):
        return task.body(payload, **options)
    return {"name": task, "payload": payload or {}, **options_of(options, f"enqueue({task!r})")}


@dataclass(frozen=True)
class TaskRef:
    """A task that was enqueued: its ``id``, read through the connection that made it."""

    id: str
    connection: Connection = field(repr=False, compare=False)

    def get(self) -> dict[str, Any]:
        """The task as ``GET /tasks/{id}`` shows it, history included."""
        return self.connection.get(self.id)

    def status(self) -> str:
        return str(self.get()["status"])

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the task is final and return its result. Raises
        :class:`dtq.TaskFailed` (dead: attempts spent), :class:`dtq.TaskCanceled`, or
        ``TimeoutError`` when ``timeout`` seconds pass first (``None``: wait on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 3600.0 if deadline is None else max(0.0, deadline - time.monotonic())
            task = self.connection.wait(self.id, left)
            status = task["status"]
            if status == "succeeded":
                return task["result"]
            if status == "dead":
                raise TaskFailed(f"task {self.id} failed: {task.get('error')}", task)
            if status == "canceled":
                raise TaskCanceled(f"task {self.id} was canceled")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"task {self.id} is still {status} after {timeout} s")

    def cancel(self) -> bool:
        """Cancel the task: True when it is canceled now, False when it is running and
        stops at its worker's next lease extension."""
        _, done = self.connection.cancel(self.id)
        return done


class Connection(ABC):
    """The calls a producer makes, whatever the transport. Bodies are task bodies as in
    ``POST /tasks``: ``{"name": …, "payload": {…}, "queue": …, …}``."""

    def enqueue(
        self, task: Enqueueable | str, payload: dict[str, Any] | None = None, **options: Any
    ) -> TaskRef:
        """Enqueue one run of ``task`` (a task object, or a task name) through this
        connection, with the options of ``Task.enqueue``."""
        return TaskRef(str(self.create(body_of(task, payload, options))["id"]), self)

    @abstractmethod
    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create one task; the task as the API shows it."""

    @abstractmethod
    def create_many(self, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Create tasks all or nothing, in one call."""

    @abstractmethod
    def get(self, task_id: str) -> dict[str, Any]:
        """The task and its history."""

    @abstractmethod
    def wait(self, task_id: str, timeout_s: float) -> dict[str, Any]:
        """The task once final, or as it is after ``timeout_s``."""

    @abstractmethod
    def cancel(self, task_id: str) -> tuple[dict[str, Any], bool]:
        """Cancel; True when canceled now, False when it runs and will stop."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (the object is unusable afterwards)."""


def _checked(body: dict[str, Any], prefix: str = "") -> None:
    # Refused before anything is sent, with the option named: the same check the server
    # makes (chalicelib/core/taskspec.py), payload size aside.
    parse_task(body, max_payload_bytes=_LOCAL_CHECK_BYTES, prefix=prefix)


class LocalConnection(Connection):
    """In the network: the task service in this process, on its own Redis client and
    PostgreSQL pool."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        tasks = self.services.tasks
        [(task, _)] = tasks.create([parse_task(body, max_payload_bytes=tasks.payload_limit)])
        return task

    def create_many(self, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.services.tasks.enqueue_many(bodies)

    def get(self, task_id: str) -> dict[str, Any]:
        return self.services.tasks.get(task_id)

    def wait(self, task_id: str, timeout_s: float) -> dict[str, Any]:
        return self.services.tasks.wait(task_id, timeout_s, history=True)

    def cancel(self, task_id: str) -> tuple[dict[str, Any], bool]:
        return self.services.tasks.cancel(task_id)

    def close(self) -> None:
        self.services.close()


_ERRORS: dict[str, type[ApiError]] = {}


def _api_errors(cls: type[ApiError]) -> None:
    for sub in cls.__subclasses__():
        _ERRORS.setdefault(sub.code, sub)
        _api_errors(sub)


_api_errors(ApiError)


def _raise_for(status: int, reply: Any) -> None:
    """The API's error body as the exception the server raised."""
    error = reply.get("error", {}) if isinstance(reply, dict) else {}
    cls = _ERRORS.get(str(error.get("code")), ApiError)
    exc = cls(str(error.get("message") or f"the API answered {status}"))
    exc.details = list(error.get("details") or [])
    raise exc


class HttpConnection(Connection):
    """Outside the network: the HTTP API, logged in as an admin user or with a token.

    A call that fails before an answer (the API unreachable, 5xx, 429) is retried with a
    growing pause up to ``retries`` times; a create is made safe to repeat by an
    idempotency key (the caller's, or one made up for the call), so a retried create never
    makes two tasks."""

    def __init__(
        self,
        api: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        retries: int = 4,
        timeout_s: float = 10.0,
    ) -> None:
        self.session = ApiSession(
            api,
            username=username,
            password=password,
            token=token,
            timeout_s=timeout_s,
            what="dtq.connect(api=…)",
        )
        self.retries = retries

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ok: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        pause = 0.1
        for attempt in range(self.retries + 1):
            try:
                status, reply = self.session.call(
                    method, path, body, headers=headers, timeout_s=timeout_s
                )
                break
            except Unavailable:
                if attempt == self.retries:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
        if status not in ok:
            _raise_for(status, reply)
        return reply

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        _checked(body)
        key = body.get("idempotency_key") or f"auto:{uuid.uuid4()}"
        return dict(
            self._call("POST", "/tasks", body, ok=(200, 201), headers={"Idempotency-Key": key})
        )

    def create_many(self, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        items = []
        for i, body in enumerate(bodies):
            _checked(body, f"tasks[{i}].")
            items.append({**body, "idempotency_key": body.get("idempotency_key") or _auto()})
        reply = self._call("POST", "/tasks/batch", {"tasks": items}, ok=(200, 201))
        return list(reply["tasks"])

    def get(self, task_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/tasks/{quote(task_id)}"))

    def wait(self, task_id: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            wait_s = max(0, min(MAX_HTTP_WAIT_S, int(left)))
            task = dict(
                self._call(
                    "GET",
                    f"/tasks/{quote(task_id)}?wait={wait_s}",
                    timeout_s=self.session.timeout_s + wait_s,
                )
            )
            if task["status"] in ("succeeded", "dead", "canceled") or wait_s == 0:
                return task

    def cancel(self, task_id: str) -> tuple[dict[str, Any], bool]:
        path = f"/tasks/{quote(task_id)}/cancel"
        status, reply = self.session.call("POST", path)
        if status not in (200, 202):
            _raise_for(status, reply)
        return dict(reply), status == 200

    def close(self) -> None:
        self.session.close()


def _auto() -> str:
    return f"auto:{uuid.uuid4()}"


_default: Connection | None = None
_default_lock = threading.Lock()


def make(
    *,
    api: str | None = None,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    redis_url: str | None = None,
    database_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Connection:
    """A connection (see :func:`connect`), not made the default.

    With ``api`` (or ``DTQ_API_URL``): over HTTP, logged in with ``username`` and
    ``password`` (or ``DTQ_USERNAME``/``DTQ_PASSWORD``) or carrying ``token``. Otherwise
    in the network, to the Redis and PostgreSQL of ``redis_url``/``database_url`` or of
    the environment (``DTQ_REDIS_URL``, ``DTQ_DATABASE_URL``, … as for every DTQ
    process)."""
    source = os.environ if env is None else env
    api = api or source.get("DTQ_API_URL") or None
    conn: Connection
    if api is not None:
        conn = HttpConnection(
            api,
            username=username or source.get("DTQ_USERNAME") or None,
            password=password or source.get("DTQ_PASSWORD") or None,
            token=token or source.get("DTQ_TOKEN") or None,
        )
    else:
        values = dict(source)
        if redis_url is not None:
            values["DTQ_REDIS_URL"] = redis_url
        if database_url is not None:
            values["DTQ_DATABASE_URL"] = database_url
        conn = LocalConnection(build(Settings.from_env(values), pool_size=4))
    return conn


def connect(**kwargs: Any) -> Connection:
    """A connection (:func:`make`'s arguments), which also becomes the process's default
    one: what task objects enqueue through unless given ``via=``."""
    global _default
    conn = make(**kwargs)
    with _default_lock:
        _default = conn
    return conn


def default() -> Connection:
    """The last :func:`connect`'s connection, or one made from the environment."""
    with _default_lock:
        conn = _default
    return conn if conn is not None else connect()


__all__ = [
    "Connection",
    "HttpConnection",
    "LocalConnection",
    "connect",
    "default",
    "errors",
    "make",
]
