"""The web dashboard's two routes in the OpenAPI document: the page and its assets
(``chalicelib/api/dashboard``). Both are public: the page signs in with
``POST /auth/login`` and calls the JSON API with the token."""

from __future__ import annotations

from typing import Any

from chalicelib.api.openapi.operations import op, param

_TEXT = {"type": "string"}


def paths() -> dict[str, Any]:
    page = {
        "description": "The dashboard page (Cache-Control: no-cache)",
        "content": {"text/html": {"schema": _TEXT}},
    }
    asset = {
        "description": "An asset, by the hashed name the page links (cached for a year, immutable)",
        "content": {
            "text/javascript": {"schema": _TEXT},
            "text/css": {"schema": _TEXT},
            "image/svg+xml": {"schema": _TEXT},
        },
    }
    name = param("asset", "path", {"type": "string", "minLength": 1, "maxLength": 200}, True)
    return {
        "/dashboard": {
            "get": op("dashboard", "The web dashboard", {200: page}, public=True, tag="dashboard")
        },
        "/dashboard/static/{asset}": {
            "get": op(
                "dashboardAsset",
                "A file of the web dashboard",
                {200: asset},
                errors=(404,),
                params=[name],
                public=True,
                tag="dashboard",
            )
        },
    }
