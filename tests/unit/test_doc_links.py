"""The documentation points at things that exist.

Checked in README.md, docs/*.md and bench/*.md (outside fenced code blocks):

- every relative markdown link resolves to a file or folder of the repository, and its
  ``#anchor``, if any, to a heading of the target page (GitHub's heading ids);
- every repository path written as inline code (`` `chalicelib/service/tasks.py` ``)
  exists, and every dotted module name (`` `chalicelib.service.epoch.split` ``) names a
  module, or a name defined at the top of one;
- every setting of ``chalicelib/core/settings.py`` has its variable in
  docs/operations.md.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from chalicelib.core import settings

ROOT = Path(__file__).parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "bench").glob("*.md")])

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
TOP = (
    "chalicelib",
    "workers",
    "schedules",
    "bench",
    "tests",
    "infra",
    "scripts",
    "docs",
    "localstack",
    ".chalice",
    ".ci",
)
REPO_PATH = re.compile(rf"^(?:{'|'.join(re.escape(t) for t in TOP)})/[\w./-]*$")
MODULE = re.compile(r"^(chalicelib|workers|schedules)(\.[A-Za-z_]\w*)+$(?<!\.py)")


def prose_lines(page: Path) -> list[str]:
    """The page's lines outside fenced code blocks."""
    out, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def without_code(line: str) -> str:
    return CODE.sub("", line)


def slug(heading: str) -> str:
    """GitHub's id of a heading: link text kept, lower case, punctuation dropped,
    spaces turned into hyphens."""
    text = LINK.sub(lambda m: m.group(1), heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(page):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    return [m.group(2) for line in prose_lines(page) for m in LINK.finditer(without_code(line))]


def code_spans(page: Path) -> list[str]:
    return [m.group(1).strip() for line in prose_lines(page) for m in CODE.finditer(line)]


def is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target) is not None


def test_the_pages_are_there() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {
        "README.md",
        "docs/architecture.md",
        "docs/api.md",
        "docs/operations.md",
        "docs/performance.md",
        "docs/guarantees.md",
        "bench/README.md",
        "bench/HISTORY.md",
    } <= names


def test_slugs_follow_github() -> None:
    assert slug("Running locally: `dtq dev`") == "running-locally-dtq-dev"
    assert slug("What bounds the figures (the CPU budget on 2 cores)") == (
        "what-bounds-the-figures-the-cpu-budget-on-2-cores"
    )
    assert slug("Results on this machine (2026-12-04, 16:20 UTC)") == (
        "results-on-this-machine-2026-12-04-1620-utc"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        if is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_paths_and_modules_exist(page: Path) -> None:
    missing = []
    for span in code_spans(page):
        path = re.sub(r":\w+$", "", span)  # bench/drive.py:System
        if REPO_PATH.match(path) and not (ROOT / path).exists():
            missing.append(span)
        elif MODULE.match(span) and not module_exists(span):
            missing.append(span)
    assert not missing, f"{page.relative_to(ROOT)} names what does not exist: {missing}"


def module_exists(dotted: str) -> bool:
    """``a.b.c`` is a module, or ``a.b`` is one that defines ``c`` at its top level."""
    parts = dotted.split(".")
    for n in (len(parts), len(parts) - 1):
        base = ROOT.joinpath(*parts[:n])
        source = (
            base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"
        )
        if not source.exists():
            continue
        if n == len(parts):
            return True
        name = re.escape(parts[-1])
        pattern = rf"^(?:def|class)\s+{name}\b|^{name}\s*[:=]"
        return re.search(pattern, source.read_text(encoding="utf-8"), re.M) is not None
    return False


def test_every_setting_is_in_operations() -> None:
    page = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    foreign = getattr(settings, "_FOREIGN_VARS", {})
    names = [foreign.get(f.name, f"DTQ_{f.name.upper()}") for f in fields(settings.Settings)]
    missing = [name for name in names if f"`{name}`" not in page]
    assert not missing, f"settings missing from docs/operations.md: {missing}"
