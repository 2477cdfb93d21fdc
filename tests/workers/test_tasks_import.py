"""``dtq worker --tasks`` finds the user's modules where the user is: the current folder
(or the ``--path`` folders) goes first on the import path, and a module that fails to
import is named, with the original exception and where it was raised. The same for
``dtq scheduler --app``.

Real ``dtq`` processes; no PYTHONPATH, so only the worker's own import path can find the
user's code."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from chalicelib.core.settings import Settings
from chalicelib.service.deps import Services
from chalicelib.service.recorder import Recorder
from tests.workers.procs import DTQ, worker_env

HANDLERS = """\
from workers.registry import task


@task("myapp.where")
def where(payload):
    import myapp

    return {"file": myapp.__file__, "echo": payload["x"]}
"""


def project(root: Path, tasks: str = HANDLERS) -> Path:
    (root / "myapp").mkdir(parents=True)
    (root / "myapp" / "__init__.py").write_text("")
    (root / "myapp" / "tasks.py").write_text(tasks)
    return root


def dtq(settings: Settings, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = worker_env(settings)
    del env["PYTHONPATH"]
    return subprocess.run(
        [DTQ, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def burst(settings: Settings, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A worker that loads its handlers, runs what is queued and exits."""
    journal = str(cwd.parent / f"journal-{cwd.name}.db")
    return dtq(settings, cwd, "worker", "--offline-db", journal, "--no-record", "--burst", *args)


def finished(services: Services, task_id: str) -> dict[str, Any]:
    Recorder(services.queue, services.store, "test").drain()
    return services.tasks.get(task_id)


def test_a_worker_imports_tasks_from_the_folder_it_runs_in(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    here = project(tmp_path / "proj")
    task = services.tasks.enqueue("myapp.where", {"x": 7})

    proc = burst(settings, here, "--tasks", "myapp.tasks")

    assert proc.returncode == 0, proc.stderr
    done = finished(services, task["id"])
    assert done["status"] == "succeeded", done
    assert done["result"] == {"file": str(here / "myapp" / "__init__.py"), "echo": 7}


def test_path_names_the_folders_to_import_from(settings: Settings, tmp_path: Path) -> None:
    project(tmp_path / "src")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    found = burst(settings, elsewhere, "--tasks", "myapp.tasks", "--path", "../src")
    assert found.returncode == 0, found.stderr
    assert "myapp.where" in found.stderr  # the startup line lists the handlers

    # --path replaces the current folder: a module only there is not found.
    project(elsewhere / "only-here")
    missing = burst(settings, elsewhere / "only-here", "--tasks", "myapp.tasks", "--path", "..")
    assert missing.returncode == 1
    assert "--tasks: cannot import 'myapp.tasks': ModuleNotFoundError: No module named 'myapp'" in (
        missing.stderr
    )
    assert "name that folder with --path" in missing.stderr

    absent = burst(settings, elsewhere, "--tasks", "myapp.tasks", "--path", "nowhere")
    assert absent.returncode == 1
    assert f"--path: {str(elsewhere / 'nowhere')!r} is not a folder" in absent.stderr


def test_a_module_that_fails_to_import_is_named_with_the_original_error(
    settings: Settings, tmp_path: Path
) -> None:
    here = project(tmp_path / "proj")
    (here / "myapp" / "broken.py").write_text("import json\n\nLIMIT = 1 / 0\n")
    (here / "myapp" / "typo.py").write_text("def handler(payload:\n    return 1\n")
    (here / "myapp" / "needs.py").write_text("import json\nimport not_installed_anywhere\n")

    broken = burst(settings, here, "--tasks", "myapp.tasks,myapp.broken")
    assert broken.returncode == 1
    assert "Traceback" not in broken.stderr
    assert (
        "dtq: --tasks: cannot import 'myapp.broken': ZeroDivisionError: division by zero\n"
        f'  File "{here / "myapp" / "broken.py"}", line 3, in <module>\n'
        "    LIMIT = 1 / 0\n"
    ) in broken.stderr

    typo = burst(settings, here, "--tasks", "myapp.typo")
    assert typo.returncode == 1
    assert "--tasks: cannot import 'myapp.typo':" in typo.stderr
    assert f'File "{here / "myapp" / "typo.py"}", line 1' in typo.stderr
    assert "SyntaxError" in typo.stderr

    needs = burst(settings, here, "--tasks", "myapp.needs")
    assert needs.returncode == 1
    assert (
        "--tasks: cannot import 'myapp.needs': "
        "ModuleNotFoundError: No module named 'not_installed_anywhere'\n"
        f'  File "{here / "myapp" / "needs.py"}", line 2, in <module>\n'
    ) in needs.stderr


def test_the_scheduler_imports_its_app_from_the_folder_it_runs_in(
    settings: Settings, tmp_path: Path
) -> None:
    here = project(tmp_path / "proj")
    (here / "myapp" / "api.py").write_text(
        "from chalice import Chalice\nfrom chalice.app import Rate\n\n"
        'app = Chalice(app_name="mine")\n\n\n'
        "@app.schedule(Rate(5, unit=Rate.MINUTES))\n"
        "def cron_tick(event):\n"
        "    return None\n"
    )

    listed = dtq(settings, here, "scheduler", "--app", "myapp.api", "--list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("cron_tick") and "rate(5 minutes)" in listed.stdout

    other = tmp_path / "other"
    other.mkdir()
    via_path = dtq(
        settings, other, "scheduler", "--app", "myapp.api", "--path", "../proj", "--list"
    )
    assert via_path.returncode == 0, via_path.stderr
    assert via_path.stdout.startswith("cron_tick")

    missing = dtq(settings, other, "scheduler", "--app", "myapp.api", "--list")
    assert missing.returncode == 1
    assert "--app: cannot import 'myapp.api': ModuleNotFoundError" in missing.stderr
