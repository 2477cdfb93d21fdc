"""How a wheel of DTQ is built; the project's metadata is in pyproject.toml.

The repository keeps the layout Chalice deploys (``app.py`` + ``chalicelib/``) next to
``workers/`` and ``schedules/``, and the development install (``pip install -e .``)
puts those names on the import path as they are. A wheel (``pip install .``,
``pip wheel .``, the image) adds one import name to an environment, ``dtq``:

    dtq/__init__.py, dtq/py.typed, …     the public package, dtq/ of the repository
    dtq/_impl/app.py                     app.py
    dtq/_impl/chalicelib/…               chalicelib/, with its .lua and .sql files
    dtq/_impl/workers/…                  workers/
    dtq/_impl/schedules/…                schedules/

Every absolute import of a moved name is rewritten on the way, as pip's ``vendoring``
does (``from chalicelib.core import errors`` → ``from dtq._impl.chalicelib.core import
errors``), in the public package too. Module names the code needs at run time (the CLI's
verb modules, ``python -m …`` of child processes, the scheduler's default ``--app``) are
derived from ``__name__``, so they follow without rewriting. The console script ``dtq``
runs ``dtq._impl.workers.cli:main`` from a wheel (pyproject.toml) and ``workers.cli:main``
in the development install.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel
from setuptools.command.egg_info import egg_info

#: Where the repository's top-level modules go in a wheel.
PREFIX = "dtq._impl"
#: The repository's top-level names that move under PREFIX (``dtq`` stays as it is).
MOVED = ("app", "chalicelib", "schedules", "workers")
#: The console script's target in the repository (pyproject.toml names a wheel's).
CLI = "workers.cli:main"

IMPL_INIT = '"""DTQ\'s implementation (the repository\'s top-level packages); private."""\n'


def wheel_name(module: str) -> str:
    """The name the repository's module ``module`` has in a wheel."""
    return f"{PREFIX}.{module}" if module.partition(".")[0] in MOVED else module


def _moved(module: str) -> bool:
    return module.partition(".")[0] in MOVED


def _char_col(line: str, byte_col: int) -> int:
    # ast gives columns in UTF-8 bytes.
    return len(line.encode("utf-8")[:byte_col].decode("utf-8"))


def rewrite_imports(source: str, filename: str) -> str:
    """``source`` with every absolute import of a moved name pointing under PREFIX.

    ``from a.b import c`` and ``import a.b as c`` keep their meaning with the module's
    new name; ``import a`` becomes ``from dtq._impl import a``. ``import a.b`` (binding
    ``a``) has no one-statement equivalent and is refused, as is an import the rewrite
    cannot find in the text: the build fails rather than ship a module that imports the
    wrong thing."""
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []  # (line index, start, end, new text)

    def refuse(node: ast.stmt, why: str) -> None:
        raise SystemExit(f"{filename}:{node.lineno}: cannot rewrite this import: {why}")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not _moved(node.module):
                continue
            row = node.lineno - 1
            start = _char_col(lines[row], node.col_offset)
            dotted = r"\s*\.\s*".join(re.escape(p) for p in node.module.split("."))
            found = re.compile(rf"from\s+({dotted})(?![\w.])").match(lines[row], start)
            if found is None:
                refuse(node, "write `from <module> import …` on one line")
                continue
            edits.append((row, found.start(1), found.end(1), wheel_name(node.module)))
        elif isinstance(node, ast.Import):
            if not any(_moved(alias.name) for alias in node.names):
                continue
            if len(node.names) != 1 or node.end_lineno != node.lineno:
                refuse(node, "import one moved module per statement, on one line")
            [alias] = node.names
            if alias.asname:
                text = f"import {wheel_name(alias.name)} as {alias.asname}"
            elif "." not in alias.name:
                text = f"from {PREFIX} import {alias.name}"
            else:
                refuse(node, f"write `from {alias.name.rpartition('.')[0]} import …`")
            row = node.lineno - 1
            start = _char_col(lines[row], node.col_offset)
            end = _char_col(lines[row], node.end_col_offset or 0)
            edits.append((row, start, end, text))
    for row, start, end, text in sorted(edits, reverse=True):
        lines[row] = lines[row][:start] + text + lines[row][end:]
    return "".join(lines)


class BuildPy(build_py):
    """In a wheel: every module and data file of the repository's packages under the
    name :func:`wheel_name` gives it, imports rewritten. Editable installs: unchanged."""

    def run(self) -> None:
        if self.editable_mode:
            super().run()
            return
        for name in (*MOVED[1:], "app.py"):  # a build of the repository layout, left over
            stale = os.path.join(self.build_lib, name)
            if os.path.isdir(stale):
                shutil.rmtree(stale)
            elif os.path.exists(stale):
                os.remove(stale)
        for target, source in self._wheel_files():
            self.mkpath(os.path.dirname(target))
            if source is None:
                with open(target, "w", encoding="utf-8") as f:
                    f.write(IMPL_INIT)
            elif source.endswith(".py"):
                with open(source, encoding="utf-8") as f:
                    text = rewrite_imports(f.read(), source)
                with open(target, "w", encoding="utf-8") as f:
                    f.write(text)
            else:
                self.copy_file(source, target, preserve_mode=False)

    def get_outputs(self, include_bytecode: Any = 1) -> list[str]:
        if self.editable_mode:
            return list(super().get_outputs(include_bytecode))
        return [target for target, _ in self._wheel_files()]

    def _wheel_files(self) -> list[tuple[str, str | None]]:
        """(file in the build, its source; None for dtq/_impl/__init__.py)."""

        def path(module: str) -> str:
            return os.path.join(self.build_lib, *wheel_name(module).split("."))

        impl_init = os.path.join(self.build_lib, *PREFIX.split("."), "__init__.py")
        files: list[tuple[str, str | None]] = [(impl_init, None)]
        for package, module, source in self.find_all_modules():
            if package.partition(".")[0] == "dtq" and module == "_impl":
                raise SystemExit("dtq/_impl is where a wheel puts the repository's packages")
            files.append((path(f"{package}.{module}" if package else module) + ".py", source))
        for package, src_dir, _, filenames in self.data_files:
            for filename in filenames:
                target = os.path.join(path(package), filename)
                files.append((target, os.path.join(src_dir, filename)))
        return files


class EggInfo(egg_info):
    """The metadata says what a wheel holds: ``dtq`` is the one top-level name."""

    def run(self) -> None:
        super().run()
        top_level = os.path.join(self.egg_info, "top_level.txt")
        self.write_file("top-level names", top_level, "dtq\n")


class EditableWheel(editable_wheel):
    """The development install: the repository's names, and a console script to match.

    The metadata (pyproject.toml, EggInfo) is a wheel's; setuptools builds the editable
    install's from the same ``dist_info`` step, so it is corrected here, in the dist-info
    directory the editable wheel is made from."""

    def _ensure_dist_info(self) -> None:
        super()._ensure_dist_info()
        info = Path(self.dist_info_dir)
        names = sorted({*MOVED, "dtq"})
        (info / "top_level.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
        entry_points = info / "entry_points.txt"
        text = entry_points.read_text(encoding="utf-8")
        wheel_cli = f"= {PREFIX}.{CLI}"
        if wheel_cli not in text:
            raise SystemExit(f"{entry_points}: expected the console script {wheel_cli!r}")
        entry_points.write_text(text.replace(wheel_cli, f"= {CLI}"), encoding="utf-8")


if not hasattr(editable_wheel, "_ensure_dist_info"):  # where setuptools 65 to 84 make it
    raise SystemExit("setup.py: this setuptools has no editable_wheel._ensure_dist_info")

if __name__ == "__main__":  # as setuptools runs it; tests import the rewrite alone
    setup(cmdclass={"build_py": BuildPy, "egg_info": EggInfo, "editable_wheel": EditableWheel})
