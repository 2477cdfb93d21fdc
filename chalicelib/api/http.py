"""The HTTP edge: one wrapper around every view, and the only place errors become
responses.

Chalice renders exceptions raised by REST views itself (``{"Code", "Message"}``) before
any middleware sees them, so :meth:`Api.route` wraps each view: it caps and parses the
body, checks the token and role, calls the view, and renders every failure in the
documented shape. The middleware then rewrites the few answers Chalice makes without
calling a view (405, 415) and counts every request for ``/metrics``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import psycopg
import redis
from chalice import Chalice, Response  # type: ignore[attr-defined]
from chalice.app import Request
from psycopg_pool import PoolTimeout

from chalicelib.api.auth import Principal, Role, parse_bearer, require_role
from chalicelib.api.web import Web
from chalicelib.core import forms, jsonbody
from chalicelib.core.errors import (
    ApiError,
    InvalidJson,
    MethodNotAllowed,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    UnsupportedMediaType,
)

log = logging.getLogger("dtq.http")

PUBLIC: frozenset[Role] = frozenset()
ADMIN = frozenset({Role.ADMIN})
WORKER = frozenset({Role.ADMIN, Role.WORKER})

#: Redis replies that mean "not available right now" rather than "bad command".
_REDIS_UNAVAILABLE = ("OOM", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY")


@dataclass(frozen=True)
class Reply:
    """A view's answer when it is not a plain 200 JSON body."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class Call:
    """One request as a view sees it."""

    def __init__(
        self, request: Request, web: Web, principal: Principal | None, params: dict[str, str]
    ) -> None:
        self.request = request
        self.web = web
        self.principal = principal
        self.params = params

    def header(self, name: str) -> str | None:
        value = self.request.headers.get(name)
        return None if value is None else str(value)

    def body(self) -> Any:
        """The parsed JSON body, which this endpoint requires."""
        raw = self.request.raw_body
        if not raw or not raw.strip():
            raise InvalidJson("a JSON body is required")
        return jsonbody.loads(raw)

    def query(self, allowed: Collection[str]) -> dict[str, str]:
        params = self.request.query_params
        multi = {k: params.getlist(k) for k in params} if params else {}
        return forms.query(multi, allowed)

    @property
    def role(self) -> Role | None:
        return self.principal.role if self.principal else None


View = Callable[[Call], Any]


def error_response(exc: ApiError, headers: dict[str, str] | None = None) -> Response:
    headers_out: dict[str, str | list[str]] = dict(headers or {})
    if isinstance(exc, RateLimited):
        headers_out["Retry-After"] = str(exc.retry_after_seconds)
    return Response(body=exc.to_body(), status_code=exc.status, headers=headers_out)


def as_api_error(exc: Exception) -> ApiError | None:
    """The documented error for ``exc``, or None for a bug (a generic 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | redis.ReadOnlyError):
        return Unavailable("Redis is unavailable")
    if isinstance(exc, redis.ResponseError) and str(exc).startswith(_REDIS_UNAVAILABLE):
        return Unavailable("Redis is unavailable")
    if isinstance(exc, psycopg.OperationalError | PoolTimeout):
        return Unavailable("PostgreSQL is unavailable")
    return None


class Api:
    """Registers views on a Chalice app with the wrapper and the middleware."""

    def __init__(self, app: Chalice, context: Callable[[], Web]) -> None:
        self.app = app
        self.context = context
        app.register_middleware(self._middleware, "http")

    def route(self, path: str, method: str, roles: frozenset[Role]) -> Callable[[View], View]:
        def register(view: View) -> View:
            @functools.wraps(view)
            def handler(**params: str) -> Response:
                return self._handle(view, roles, params)

            # Any content type reaches the wrapper, which answers 415 in our own shape.
            self.app.route(path, methods=[method], content_types=["*/*"])(handler)
            return view

        return register

    def _handle(self, view: View, roles: frozenset[Role], params: dict[str, str]) -> Response:
        request = self.app.current_request
        assert request is not None
        try:
            web = self.context()
            self._check_body(request, web)
            principal = self._authenticate(request, web, roles) if roles else None
            decoded = {k: unquote(v) for k, v in params.items()}
            result = view(Call(request, web, principal, decoded))
        except Exception as exc:  # every failure becomes one documented answer
            api_error = as_api_error(exc)
            if api_error is None:
                log.exception("unhandled error in %s %s", request.method, request.path)
                return _internal_error()
            if isinstance(api_error, Unavailable):
                log.warning("%s %s: %s (%r)", request.method, request.path, api_error, exc)
            return error_response(api_error)
        if isinstance(result, Reply):
            headers: dict[str, str | list[str]] = dict(result.headers)
            return Response(body=result.body, status_code=result.status, headers=headers)
        if isinstance(result, Response):
            return result
        return Response(body=result, status_code=200)

    @staticmethod
    def _check_body(request: Request, web: Web) -> None:
        raw = request.raw_body
        if not raw:
            return
        if len(raw) > web.settings.max_body_bytes:
            raise PayloadTooLarge(f"the body is larger than {web.settings.max_body_bytes} bytes")
        content_type = request.headers.get("content-type")
        if content_type is not None and not is_json(content_type):
            raise UnsupportedMediaType(f"expected application/json, got {content_type[:100]!r}")

    @staticmethod
    def _authenticate(request: Request, web: Web, roles: frozenset[Role]) -> Principal:
        principal = web.issuer.verify(parse_bearer(request.headers.get("authorization")))
        require_role(principal, roles)
        return principal

    def _middleware(self, event: Request, get_response: Callable[[Request], Response]) -> Any:
        start = time.perf_counter()
        response = get_response(event)
        response = _own_shape(response)
        route = event.context.get("resourcePath") if event is not None else None
        try:
            web = self.context()
        except Exception:
            return response
        if route:
            elapsed = time.perf_counter() - start
            web.http_stats.observe(route, event.method, response.status_code, elapsed)
        return response


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _internal_error() -> Response:
    body = {"error": {"code": "internal_error", "message": "internal error", "details": []}}
    return Response(body=body, status_code=500)


def _own_shape(response: Response) -> Response:
    """Chalice's own answers (made without calling a view) in the documented shape."""
    body = response.body
    if not (isinstance(body, dict) and set(body) == {"Code", "Message"}):
        return response
    if response.status_code == 405:
        allow = str(response.headers.get("Allow", ""))
        return error_response(MethodNotAllowed(), {"Allow": allow} if allow else None)
    if response.status_code == 415:
        return error_response(UnsupportedMediaType())
    log.error("chalice answered %s itself: %s", response.status_code, body.get("Message"))
    return _internal_error()
