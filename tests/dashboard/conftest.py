"""A real ``dtq api`` and a real ``dtq worker`` on the test Redis and PostgreSQL, and
Debian's chromium driven by Playwright (its own browser download is never used)."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api

from chalicelib.core.settings import Settings
from tests.client.conftest import api_url
from tests.workers.conftest import spawn_worker

__all__ = ["api_url", "spawn_worker"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("chromium is not installed (bash scripts/test-tools.sh installs it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where a test saves its screenshots (kept with the test run's temporary files)."""
    path = tmp_path / "screenshots"
    path.mkdir()
    return path


class Api:
    """The JSON API as the tests' own client, with an admin token."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        body = {"username": "admin", "password": settings.admin_password}
        self.token = str(self.call("POST", "/auth/login", body, auth=False)["access_token"])

    def call(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None


@pytest.fixture
def api(api_url: str, settings: Settings) -> Api:
    return Api(api_url, settings)
