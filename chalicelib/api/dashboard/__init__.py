"""``GET /dashboard``: the web dashboard, served by the API itself (same origin, so it
runs wherever the API runs: ``dtq api``, ``dtq dev``, Lambda behind API Gateway).

The page and its assets are package data next to this module: ``index.html`` and the
files of ``static/`` (JavaScript modules, CSS, an icon). No build step: each asset is
served under a name carrying a hash of its content (``app.3f9c0a1b2c4d.js``), with a
long ``Cache-Control`` and ``immutable``; a module's ``import … from "./x.js"`` is
rewritten to the hashed name of ``x.js`` first, so a change anywhere renames every
module that depends on it. The page itself is served with ``no-cache``. Everything goes
out with a strict Content-Security-Policy: scripts, styles and requests from this
origin only, no inline script or style, no framing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from chalicelib.api.http import Reply
from chalicelib.core.errors import NotFound

HERE = Path(__file__).parent
STATIC = HERE / "static"

TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml; charset=utf-8",
}

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: A year: an asset's name changes whenever its content does.
IMMUTABLE = "public, max-age=31536000, immutable"
PAGE_CACHE = "no-cache"

#: ``from "./x.js"``, ``import "./x.js"``, ``import("./x.js")``: relative module imports.
_IMPORT = re.compile(r"""(\bfrom\s*|\bimport\s*\(?\s*)(["'])\./([A-Za-z0-9_-]+\.js)\2""")
#: ``{{app.js}}`` in index.html: the hashed name of that asset.
_PLACEHOLDER = re.compile(r"\{\{([A-Za-z0-9_.-]+)\}\}")


@dataclass(frozen=True)
class Asset:
    body: str
    content_type: str


@dataclass(frozen=True)
class Bundle:
    names: dict[str, str]  # file name in static/ -> the name it is served under
    assets: dict[str, Asset]  # served name -> asset
    page: str


def _hashed(name: str, text: str) -> str:
    stem, dot, ext = name.rpartition(".")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return f"{stem}.{digest}{dot}{ext}"


@cache
def bundle() -> Bundle:
    """Every asset under its hashed name, and the page pointing at them (built once)."""
    sources = {
        p.name: p.read_text(encoding="utf-8")
        for p in sorted(STATIC.iterdir())
        if p.is_file() and p.suffix in TYPES
    }
    names: dict[str, str] = {}
    assets: dict[str, Asset] = {}

    def visit(name: str, trail: tuple[str, ...]) -> str:
        if name in names:
            return names[name]
        if name in trail:
            raise RuntimeError(f"dashboard modules import each other: {' -> '.join(trail)}")
        if name not in sources:
            raise RuntimeError(f"dashboard: {trail[-1]} imports {name}, which does not exist")
        text = sources[name]
        if name.endswith(".js"):

            def rename(m: re.Match[str]) -> str:
                return f"{m[1]}{m[2]}./{visit(m[3], (*trail, name))}{m[2]}"

            text = _IMPORT.sub(rename, text)
        served = _hashed(name, text)
        names[name] = served
        assets[served] = Asset(text, TYPES[Path(name).suffix])
        return served

    for name in sources:
        visit(name, ())

    def link(m: re.Match[str]) -> str:
        if m[1] not in names:
            raise RuntimeError(f"dashboard: index.html names {m[1]}, which does not exist")
        return f"dashboard/static/{names[m[1]]}"

    page = _PLACEHOLDER.sub(link, (HERE / "index.html").read_text(encoding="utf-8"))
    return Bundle(names, assets, page)


def page() -> Reply:
    """``GET /dashboard``: the one page; the views are hash routes (``#/tasks``)."""
    headers = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": PAGE_CACHE}
    return Reply(bundle().page, headers={**headers, **SECURITY})


def asset(name: str) -> Reply:
    """``GET /dashboard/static/{asset}``: an asset by its hashed name, cached for good."""
    found = bundle().assets.get(name)
    if found is None:
        raise NotFound("no such dashboard asset")
    headers = {"Content-Type": found.content_type, "Cache-Control": IMMUTABLE}
    return Reply(found.body, headers={**headers, **SECURITY})
