"""The Chalice app's routes, called straight from ``dtq api``: no API Gateway event.

``chalice.local`` answers a request by building the Lambda event and context that API
Gateway would send (dictionaries, a UUID, a fresh handler object), then unpacking them
again in ``Chalice.__call__``. :class:`Edge` does the same steps on the request itself
(≈ 11 µs), in the same order and with the same answers, so ``dtq api`` and ``chalice
local`` (and the tests' ``chalice.test.Client``) answer alike, byte for byte; with the
leaner header reading in ``workers/cli/serve.py`` the API spends ≈ 130 µs less CPU per
``POST /tasks`` (bench/HISTORY.md, 2026-12-06):

1. the route, as ``chalice.local.RouteMatcher`` finds it (routes in sorted order,
   ``urlparse``, one trailing slash dropped, query strings with blank values kept);
2. ``OPTIONS`` on a path with no ``OPTIONS`` view: the gateway's own preflight answer;
3. a :class:`chalice.app.Request`, set as the thread's ``app.current_request``;
4. the app's HTTP middleware around the view, under Chalice's catch-all (a 500);
5. what ``RestAPIEventHandler`` does around a view: 405 with ``Allow``, 415 for a content
   type the route does not take, CORS headers, ``ChaliceViewError`` → its status, the
   check that a binary answer was asked for;
6. the answer as ``Response.to_dict`` and the local server render it (JSON with
   Chalice's separators; a binary body leaves as the bytes it is, without the base64
   round trip).

Authorizers are API Gateway's: DTQ has none (``chalicelib/api/http.py`` checks the token
inside every view), and :class:`Edge` refuses an app with one rather than skip it.
Lambda never imports this module; the app is the same there.
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlparse

from chalice.app import (
    CaseInsensitiveMapping,
    Chalice,
    ChaliceError,
    ChaliceUnhandledError,
    ChaliceViewError,
    MiddlewareHandler,
    Request,
    Response,
    RouteEntry,
    error_response,
    handle_extra_types,
)

#: The source address chalice.local puts in every event (the app never reads it).
LOCAL_SOURCE_IP = "127.0.0.1"

Headers = dict[str, str | list[str]]


class Answer(NamedTuple):
    """What goes back: the status, the headers (single values, then lists), the body
    (None only for the preflight answer, which has none)."""

    status: int
    headers: Headers
    body: bytes | None


class Match(NamedTuple):
    resource: str  # the route's pattern, e.g. /tasks/{id}
    captured: dict[str, str]  # path parameters, still percent-encoded
    query: dict[str, list[str]]


class _Pattern(NamedTuple):
    resource: str
    literals: Callable[[list[str]], object]  # the literal segments of a path's parts
    expected: object  # what ``literals`` gives for this route's own parts
    captures: tuple[tuple[int, str], ...]

    def matches(self, parts: list[str]) -> bool:
        return self.literals(parts) == self.expected


class Router:
    """Path → route, as ``chalice.local.RouteMatcher``: the first route in sorted order
    whose literal segments all match (so ``/tasks/claim`` before ``/tasks/{id}``)."""

    def __init__(self, resources: Iterable[str]) -> None:
        by_length: dict[int, list[_Pattern]] = {}
        #: Routes without parameters that no route before them would take: one lookup.
        self._static: dict[str, _Pattern] = {}
        for resource in sorted(resources):
            parts = resource.split("/")
            literal, captures = [], []
            for i, part in enumerate(parts):
                if part.startswith("{") and part.endswith("}"):
                    captures.append((i, part[1:-1]))
                else:
                    literal.append(i)
            getter = itemgetter(*literal)  # every route has one: the "" before its "/"
            pattern = _Pattern(resource, getter, getter(parts), tuple(captures))
            before = by_length.setdefault(len(parts), [])
            if not captures and not any(p.matches(parts) for p in before):
                self._static[resource] = pattern
            before.append(pattern)
        self._by_length = by_length

    def match(self, target: str) -> Match | None:
        """The route of a request target (path and query); None when none matches.
        Raises ValueError for a target ``urlparse`` refuses, as the gateway does."""
        url = urlparse(target)
        path = url.path
        # API Gateway drops a trailing slash (but not the root's); so does chalice.local.
        if path != "/" and path.endswith("/"):
            path = path[:-1]
        query = parse_qs(url.query, keep_blank_values=True) if url.query else {}
        static = self._static.get(path)
        if static is not None:
            return Match(static.resource, {}, query)
        parts = path.split("/")
        for pattern in self._by_length.get(len(parts), ()):
            if pattern.matches(parts):
                captured = {name: parts[i] for i, name in pattern.captures}
                return Match(pattern.resource, captured, query)
        return None


class MediaTypes:
    """``chalice.app._matches_content_type`` against a fixed list, lower-cased once."""

    def __init__(self, types: Iterable[str]) -> None:
        self._types = frozenset(t.lower() for t in types)
        self._any = "*/*" in self._types

    def match(self, content_type: str) -> bool:
        content_type = content_type.lower()
        if "*/*" in content_type or self._any:
            return True
        return any(part.strip() in self._types for part in re.split("[,;]", content_type))


_JSON = MediaTypes(["application/json"])


class Edge:
    """Dispatches requests to ``app``'s views (see the module's docstring)."""

    def __init__(self, app: Chalice) -> None:
        for resource, views in app.routes.items():
            for method, entry in views.items():
                if entry.authorizer is not None:
                    raise ValueError(
                        f"{method} {resource} has an API Gateway authorizer, which dtq api "
                        "does not run; check tokens in the view (chalicelib/api/http.py)"
                    )
        self.app = app
        self.routes: dict[str, dict[str, RouteEntry]] = app.routes
        self.router = Router(app.routes)
        self.binary = MediaTypes(app.api.binary_types)
        # The media types each view takes, keyed by the entry itself (fixed at import).
        self._takes = {
            id(entry): MediaTypes(entry.content_types)
            for views in app.routes.values()
            for entry in views.values()
            if entry.content_types
        }
        handler: Callable[[Request], Response] = self._route
        middleware = [f for f, kind in app.middleware_handlers if kind in ("http", "all")]
        for outer in reversed([self._catch_all, *middleware]):
            handler = MiddlewareHandler(handler=outer, next_handler=handler)
        self._handler = handler

    def dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None
    ) -> Answer | None:
        """The answer to one request, or None when no route matches its path.

        ``headers``: lower-case names, the first value of each (as the gateway's event);
        ``body``: None when the request had none."""
        try:
            match = self.router.match(target)
        except ValueError:
            return None
        if match is None:
            return None
        views = self.routes[match.resource]
        if method == "OPTIONS" and "OPTIONS" not in views:
            return Answer(200, _preflight_headers(views), None)
        request = Request(
            {
                "multiValueQueryStringParameters": match.query or None,
                "headers": headers,
                "pathParameters": match.captured,
                "requestContext": {
                    "httpMethod": method,
                    "resourcePath": match.resource,
                    "identity": {"sourceIp": LOCAL_SOURCE_IP},
                    "path": target.split("?")[0],
                },
                "stageVariables": {},
                "body": body,
            }
        )
        self.app.current_request = request
        return self._answer(self._handler(request))

    # -- around the view (chalice.app.RestAPIEventHandler) ------------------------------

    def _catch_all(self, request: Request, get_response: Callable[[Request], Response]) -> Any:
        try:
            return get_response(request)
        except Exception:
            return self._internal_error(request)

    def _route(self, request: Request) -> Response:
        views = self.routes[request.path]
        entry = views.get(request.method)
        if entry is None:
            return error_response(
                error_code="MethodNotAllowedError",
                message=f"Unsupported method: {request.method}",
                http_status_code=405,
                headers={"Allow": ", ".join(views)},
            )
        cors: Headers | None = None
        if entry.cors is not None:
            cors = {**entry.cors.get_access_control_headers()}
        takes = self._takes.get(id(entry))
        if takes is not None:
            content_type = request.headers.get("content-type", "application/json")
            if not takes.match(content_type):
                return error_response(
                    error_code="UnsupportedMediaType",
                    message=f"Unsupported media type: {content_type}",
                    http_status_code=415,
                    headers=cors,
                )
        params = request.uri_params or {}
        args = {name: params[name] for name in entry.view_args}
        response = self._view(request, entry.view_function, args)
        if cors is not None:
            for name, value in cors.items():
                response.headers.setdefault(name, value)
        if not self._binary_allowed(request, response):
            content_type = CaseInsensitiveMapping(response.headers).get("content-type", "")
            return error_response(
                error_code="BadRequest",
                message=(
                    f"Request did not specify an Accept header with {content_type}, "
                    f"The response has a Content-Type of {content_type}. If a "
                    "response has a binary Content-Type then the request "
                    "must specify an Accept header that matches."
                ),
                http_status_code=400,
                headers=cors,
            )
        return response

    def _view(self, request: Request, view: Callable[..., Any], args: dict[str, str]) -> Response:
        try:
            response = view(**args)
            if not isinstance(response, Response):
                response = Response(body=response)
            for name, value in response.headers.items():
                if "\n" in value:
                    raise ChaliceError(f"Bad value for header '{name}': {value!r}")
        except ChaliceUnhandledError:
            raise  # for the middleware to handle
        except ChaliceViewError as e:
            body = {"Code": e.__class__.__name__, "Message": str(e)}
            response = Response(body=body, status_code=e.STATUS_CODE)
        except Exception:
            response = self._internal_error(request)
        return response

    def _binary_allowed(self, request: Request, response: Response) -> bool:
        """A binary answer only to a request whose Accept names a binary type."""
        content_type = CaseInsensitiveMapping(response.headers).get(
            "content-type", "application/json"
        )
        if not self.binary.match(content_type):
            return True
        accept = request.headers.get("accept")
        return accept is not None and self.binary.match(accept)

    def _internal_error(self, request: Request) -> Response:
        self.app.log.error("Caught exception for path %s", request.path, exc_info=True)
        if self.app.debug:
            headers: Headers = {"Content-Type": "text/plain"}
            return Response(body=traceback.format_exc(), headers=headers, status_code=500)
        body = {"Code": "InternalServerError", "Message": "An internal server error occurred."}
        return Response(body=body, status_code=500)

    # -- the answer (Response.to_dict, then chalice.local's handler) ---------------------

    def _answer(self, response: Response) -> Answer:
        body = response.body
        if not isinstance(body, str | bytes):
            body = json.dumps(body, separators=(",", ":"), default=handle_extra_types)
        single: Headers = {}
        multi: Headers = {}
        content_type = ""
        for name, value in response.headers.items():
            if isinstance(value, list):
                multi[name] = value
            else:
                single[name] = value
                if name.lower() == "content-type":
                    content_type = value
        if self.binary.match(content_type):
            if not content_type or _JSON.match(content_type):
                body = body if isinstance(body, bytes) else body.encode("utf-8")
            if not isinstance(body, bytes):
                raise ValueError(
                    f"Expected bytes type for body with binary Content-Type. Got {type(body)} "
                    "type body instead."
                )
        elif isinstance(body, str):
            body = body.encode("utf-8")
        single.update(multi)
        return Answer(response.status_code, single, body)


def _preflight_headers(views: dict[str, RouteEntry]) -> Headers:
    """The gateway's answer to an OPTIONS the app has no view for."""
    methods = [method for method, entry in views.items() if entry.cors is not None]
    if not methods:
        return {"Access-Control-Allow-Methods": "OPTIONS"}
    headers: Headers = {**views[methods[0]].cors.get_access_control_headers()}
    headers["Access-Control-Allow-Methods"] = ",".join([*methods, "OPTIONS"])
    return headers
