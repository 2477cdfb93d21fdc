"""docs/api.md against the app's OpenAPI document: every endpoint the app serves is
written down, and every endpoint the page names exists.

An endpoint counts as named when it appears in a code span as ``METHOD /path``
(`` `POST /tasks/{id}/cancel` ``); a query string after the path is ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from chalicelib.api.openapi import spec

DOC = Path(__file__).parents[2] / "docs" / "api.md"
METHODS = ("get", "put", "post", "patch", "delete", "head", "options")
NAMED = re.compile(r"`(GET|PUT|POST|PATCH|DELETE|HEAD|OPTIONS) (/[^`\s?]*)")


def served() -> set[tuple[str, str]]:
    paths = spec.document()["paths"]
    return {(m.upper(), path) for path, ops in paths.items() for m in ops if m in METHODS}


def named() -> set[tuple[str, str]]:
    return {(m, path) for m, path in NAMED.findall(DOC.read_text(encoding="utf-8"))}


def test_the_openapi_document_has_endpoints() -> None:
    assert ("POST", "/tasks") in served()


def test_every_served_endpoint_is_in_the_api_doc() -> None:
    missing = sorted(served() - named())
    assert not missing, f"endpoints missing from docs/api.md: {missing}"


def test_every_endpoint_in_the_api_doc_is_served() -> None:
    unknown = sorted(named() - served())
    assert not unknown, f"docs/api.md names endpoints the app does not serve: {unknown}"
