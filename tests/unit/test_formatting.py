"""Formatting is decided once: ``ruff format`` everywhere (the test command checks it),
no line-by-line ``# fmt: skip``, and ``# fmt: off`` only around the OpenAPI tables."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = (
    "app.py",
    "chalicelib",
    "workers",
    "schedules",
    "dtq",
    "tests",
    "bench",
    "infra",
    "examples",
)
TABLES = "chalicelib/api/openapi/"


def _python_files() -> list[Path]:
    found: list[Path] = []
    for top in CODE:
        path = ROOT / top
        found += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return found


def test_no_line_is_formatted_by_hand() -> None:
    files = _python_files()
    assert len(files) > 100, "the walk found too few files: is ROOT right?"
    marked = [
        f"{f.relative_to(ROOT)}:{n}"
        for f in files
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
        if line.rstrip().endswith("# fmt: skip")
    ]
    assert not marked, f"ruff format decides these lines: {marked}"


def test_fmt_off_only_fences_the_openapi_tables() -> None:
    fenced = {
        str(f.relative_to(ROOT))
        for f in _python_files()
        if any(line.strip() == "# fmt: off" for line in f.read_text(encoding="utf-8").splitlines())
    }
    assert fenced, "the OpenAPI tables are no longer fenced: drop this test's exception"
    assert all(f.startswith(TABLES) for f in fenced), sorted(fenced)
