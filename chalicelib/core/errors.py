"""The one exception tree of DTQ.

Every error the project produces is a :class:`DTQError`. API errors carry their HTTP
meaning (``status`` and ``code``) and are rendered in exactly one place (``http.py``).
The docstring of each class is its default message.
"""

from __future__ import annotations

from typing import Any


class DTQError(Exception):
    """An error occurred in DTQ."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        super().__init__(self.message)


class ConfigError(DTQError):
    """A setting is invalid."""


class ApiError(DTQError):
    """The request failed."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self, message: str | None = None, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.details = details or []

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidJson(ApiError):
    """The body is not valid JSON."""

    status, code = 400, "invalid_json"


class ValidationError(ApiError):
    """The request is invalid."""

    status, code = 400, "validation_error"


class Unauthorized(ApiError):
    """Authentication is required."""

    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    """Your role does not allow this."""

    status, code = 403, "forbidden"


class NotFound(ApiError):
    """No such resource."""

    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    """This method is not allowed on this resource."""

    status, code = 405, "method_not_allowed"


class Conflict(ApiError):
    """The current state does not allow this."""

    status, code = 409, "conflict"


class LeaseLost(Conflict):
    """The lease is no longer yours."""


class AlreadyFinished(Conflict):
    """The task already finished."""


class TaskCanceled(Conflict):
    """The task was canceled."""


class InvalidTransition(Conflict):
    """The task's state does not allow this."""


class PayloadTooLarge(ApiError):
    """The body or payload is too large."""

    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    """Only application/json bodies are accepted."""

    status, code = 415, "unsupported_media_type"


class RateLimited(ApiError):
    """Too many requests."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str | None = None, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = max(1, int(retry_after_seconds))


class Unavailable(ApiError):
    """A backing service (Redis or PostgreSQL) is unavailable; nothing was written."""

    status, code = 503, "unavailable"


class TaskFailed(DTQError):
    """The task failed: its attempts are spent and it is in the dead-letter queue."""

    def __init__(self, message: str | None = None, task: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        #: the task as ``GET /tasks/{id}`` shows it; ``task["error"]`` is the last error
        self.task = task or {}


class TaskSignal(Exception):
    """Raised by task handlers to steer their own attempt; never rendered as HTTP."""


class Retry(TaskSignal):
    """Ask for another attempt, optionally after ``delay_seconds``."""

    def __init__(self, delay_seconds: float | None = None, reason: str = "retry requested"):
        super().__init__(reason)
        self.delay_seconds = delay_seconds


class Cancelled(TaskSignal):
    """The task was canceled while it ran."""
