"""The walls of the house: which part may import which (docs/architecture.md).

``chalicelib`` is layered ``api → service → {queue, record} → core``: a layer imports its
own modules and the layers below it, ``queue`` and ``record`` never each other, ``core``
nothing of DTQ. Nothing in ``chalicelib`` imports ``workers`` or ``schedules``; the root of
``workers`` (the runtime) does not import its command line or its dev stack; and no
modules import each other in a circle. Every import counts, lazy ones inside functions
and ``TYPE_CHECKING`` ones included: an arrow is an arrow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGES = ("chalicelib", "workers", "schedules", "dtq")

#: What each layer of chalicelib may import besides itself.
BELOW = {
    "core": set(),
    "queue": {"core"},
    "record": {"core"},
    "service": {"core", "queue", "record"},
    "api": {"core", "service"},
}


def modules() -> dict[str, Path]:
    found = {"app": ROOT / "app.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Every DTQ module ``path`` imports (``from a import b`` names ``a.b`` when that is
    a module, else ``a``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in known:
                    yield full
                elif node.module in known:
                    yield node.module


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imports(path, known)) - {name} for name, path in known.items()}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "chalicelib" and len(parts) > 1 else None


def test_every_module_of_chalicelib_lives_in_a_layer() -> None:
    loose = [m for m in graph() if m.startswith("chalicelib.") and layer(m) not in BELOW]
    assert not loose, f"modules outside core/queue/record/service/api: {loose}"


def test_chalicelib_arrows_point_down_the_layers() -> None:
    arrows = {(a, b) for a, targets in graph().items() for b in targets}
    wrong = set()
    for a, b in arrows:
        la, lb = layer(a), layer(b)
        if la is None:
            continue
        if not b.startswith("chalicelib"):
            wrong.add((a, b))  # chalicelib never imports workers or schedules
        elif lb is not None and lb != la and lb not in BELOW[la]:
            wrong.add((a, b))
    assert not wrong, f"arrows across the walls: {sorted(wrong)}"


def test_the_worker_runtime_does_not_import_its_command_line_or_dev_stack() -> None:
    wrong = sorted(
        (a, b)
        for a, targets in graph().items()
        for b in targets
        if a.startswith("workers.")
        and a.split(".")[1] not in ("cli", "devstack")
        and b.split(".")[:2] in (["workers", "cli"], ["workers", "devstack"])
    )
    assert not wrong, wrong


def test_the_public_package_is_the_front_nothing_else_imports() -> None:
    """``dtq`` fronts the house; in an installed DTQ every internal module sits inside
    it, so an arrow back into it would be a circle through its ``__init__``."""
    g = graph()
    assert "dtq" in g and g["dtq._task"], "the walk no longer sees the dtq package"
    wrong = sorted(
        (a, b)
        for a, targets in g.items()
        for b in targets
        if b.startswith("dtq") and not a.startswith("dtq")
    )
    assert not wrong, wrong


def test_no_modules_import_each_other_in_a_circle() -> None:
    g = graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                circles.append([*path[path.index(n) :], n])
            elif n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not circles, "circles: " + "; ".join(" → ".join(c) for c in circles)


def test_sql_runs_in_the_record_layer() -> None:
    users = {a for a, targets in graph().items() if "chalicelib.record.sql" in targets}
    outside = {m for m in users if not m.startswith("chalicelib.record")}
    assert users, "nothing imports chalicelib.record.sql: the walk no longer sees imports"
    assert not outside, f"named SQL used outside record/: {sorted(outside)}"
