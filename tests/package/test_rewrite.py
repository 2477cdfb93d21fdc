"""setup.py's import rewrite, statement by statement: what a wheel's modules become."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_setup() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dtq_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup = load_setup()


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("from chalicelib.core import errors\n", "from dtq._impl.chalicelib.core import errors\n"),
        ("from workers import registry\n", "from dtq._impl.workers import registry\n"),
        ("from app import app\n", "from dtq._impl.app import app\n"),
        (
            "def f():\n    from schedules.runner import Timer  # lazy\n",
            "def f():\n    from dtq._impl.schedules.runner import Timer  # lazy\n",
        ),
        (
            "from chalicelib . core import (\n    errors,\n    ids,\n)\n",
            "from dtq._impl.chalicelib.core import (\n    errors,\n    ids,\n)\n",
        ),
        ("import workers\n", "from dtq._impl import workers\n"),
        (
            "import workers.registry as registry\n",
            "import dtq._impl.workers.registry as registry\n",
        ),
        # Names that only look alike, relative imports and strings are left alone.
        (
            "from chalicelib.api import workers, schedules\n",
            "from dtq._impl.chalicelib.api import workers, schedules\n",
        ),
        (
            "from workers_extra import x\nimport applications\n",
            "from workers_extra import x\nimport applications\n",
        ),
        (
            "from .registry import task\nfrom dtq import _task\n",
            "from .registry import task\nfrom dtq import _task\n",
        ),
        (
            '"""from workers.registry import task"""\nNAME = "workers.cli"\n',
            '"""from workers.registry import task"""\nNAME = "workers.cli"\n',
        ),
        (
            'x = "é"; from workers import registry\n',
            'x = "é"; from dtq._impl.workers import registry\n',
        ),
    ],
)
def test_imports_of_the_moved_names_point_under_dtq_impl(before: str, after: str) -> None:
    assert setup.rewrite_imports(before, "m.py") == after


@pytest.mark.parametrize(
    "source",
    [
        "import workers.registry\n",
        "import json, workers\n",
        "from \\\n    workers import registry\n",
    ],
)
def test_an_import_without_a_faithful_rewrite_fails_the_build(source: str) -> None:
    with pytest.raises(SystemExit, match=r"m\.py:1: cannot rewrite this import"):
        setup.rewrite_imports(source, "m.py")
