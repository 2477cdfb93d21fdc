"""``GET /dashboard`` and its assets through the app: the headers that make the page safe
(CSP, no framing) and cacheable (hashed names, immutable), and the hashed names that the
page and the modules point at."""

from __future__ import annotations

import re
from typing import Any

from chalicelib.api import dashboard
from tests.api.conftest import Http, assert_error

HASHED = re.compile(r"^[a-z]+\.[0-9a-f]{12}\.(js|css|svg)$")


def headers(response: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in response.headers.items()}


def csp(response: Any) -> dict[str, str]:
    header = headers(response)["content-security-policy"]
    directives = [d.strip().split(" ", 1) for d in header.split(";")]
    return {name: value for name, value in directives}


def test_the_page_is_html_with_a_strict_policy_and_no_cache(anon: Http) -> None:
    r = anon.get("/dashboard")
    assert r.status_code == 200
    assert headers(r)["content-type"] == "text/html; charset=utf-8"
    assert headers(r)["cache-control"] == "no-cache"
    policy = csp(r)
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in headers(r)["content-security-policy"]
    assert headers(r)["x-content-type-options"] == "nosniff"
    assert headers(r)["x-frame-options"] == "DENY"
    page = r.body.decode()
    # No inline script or style, and nothing from another origin.
    assert "<style" not in page and " style=" not in page
    assert re.findall(r"<script[^>]*>([^<]*)</script>", page) == [""]
    assert "http://" not in page and "https://" not in page and "//" not in page.replace("://", "")


def test_the_page_links_every_asset_by_its_hashed_name(anon: Http) -> None:
    page = anon.get("/dashboard").body.decode()
    linked = re.findall(r'(?:href|src)="dashboard/static/([^"]+)"', page)
    assert len(linked) == 3
    for name in linked:
        assert HASHED.match(name), name
        r = anon.get(f"/dashboard/static/{name}")
        assert r.status_code == 200
        assert headers(r)["cache-control"] == "public, max-age=31536000, immutable"
        assert csp(r)["default-src"] == "'self'"
        assert headers(r)["x-content-type-options"] == "nosniff"
    types = {n.rsplit(".", 1)[1]: headers(anon.get(f"/dashboard/static/{n}")) for n in linked}
    assert types["js"]["content-type"] == "text/javascript; charset=utf-8"
    assert types["css"]["content-type"] == "text/css; charset=utf-8"
    assert types["svg"]["content-type"] == "image/svg+xml; charset=utf-8"


def test_module_imports_point_at_hashed_names_and_the_hash_is_the_content() -> None:
    bundle = dashboard.bundle()
    assert set(bundle.names) >= {"app.js", "api.js", "dom.js", "style.css"}
    for served, found in bundle.assets.items():
        assert HASHED.match(served), served
        assert served == dashboard._hashed(
            served.split(".")[0] + "." + served.rsplit(".")[-1], found.body
        )
        if served.endswith(".js"):
            for target in re.findall(r"""from\s*["']\./([^"']+)["']""", found.body):
                assert target in bundle.assets, (served, target)


def test_the_scripts_never_write_html() -> None:
    for name in dashboard.bundle().names:
        if name.endswith(".js"):
            text = (dashboard.STATIC / name).read_text(encoding="utf-8")
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
                assert sink not in text, (name, sink)


def test_an_unknown_asset_is_a_404_in_the_api_shape(anon: Http) -> None:
    assert_error(anon.get("/dashboard/static/app.000000000000.js"), 404, "not_found")
    assert_error(anon.get("/dashboard/static/app.js"), 404, "not_found")
