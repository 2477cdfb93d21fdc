"""The wheel, installed as a user installs it: one import name (``dtq``), and a user
project with its own ``workers`` package and ``app.py`` runs ``dtq worker --tasks
myapp.tasks`` and enqueues through ``dtq`` with neither shadowing the other.

The wheel is built from a copy of the working tree (setup.py's layout) with this
environment's setuptools, installed with ``--no-deps`` into a fresh venv that borrows the
dependencies from this one's site-packages (a .pth line; not the repository, and not
this environment's development install of DTQ), then run against the test Redis and a
PostgreSQL database of its own."""

from __future__ import annotations

import ast
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from chalicelib.core.settings import Settings
from chalicelib.service import deps
from chalicelib.service.recorder import Recorder
from tests.conftest import DATABASE_URL, REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
#: What a wheel is built from (the image's build context holds the same).
SOURCES = ("pyproject.toml", "setup.py", "requirements.txt", "app.py", "dtq", "chalicelib")
SOURCES += ("workers", "schedules")
MOVED = {"app", "chalicelib", "schedules", "workers"}

USER_TASKS = """\
import sys

import app
import workers

import dtq


@dtq.task("user.hello", queue="q")
def hello(payload):
    return {
        "x": payload["x"],
        "workers": [workers.WHO, workers.__file__],
        "app": [app.WHO, app.__file__],
        "dtq": dtq.__file__,
        "dtq_names_loaded": sorted(
            name for name in sys.modules if name.partition(".")[0] in {"chalicelib", "schedules"}
        ),
    }
"""

PRODUCER = """\
import workers

import dtq
from myapp.tasks import hello

assert workers.WHO == "user", workers.__file__
print(hello.enqueue({"x": 7}).id)
"""


#: What the build and install steps run with: no PYTHONPATH, no DTQ settings.
CLEAN = {k: v for k, v in os.environ.items() if not k.startswith("DTQ_") and k != "PYTHONPATH"}


def run(*argv: str | Path, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, (argv, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=junk)
        else:
            shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    args = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", src]
    run(*pip, *args, "-w", work / "dist", cwd=work, env=CLEAN)
    [built] = (work / "dist").glob("dtq-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path) -> Path:
    """A venv holding the wheel, and the dependencies through a .pth line (added after the
    install, so pip never sees this environment's development install of DTQ)."""
    where = wheel.parent.parent / "venv"
    base = Path(getattr(sys, "_base_executable", sys.executable))
    run(base, "-m", "venv", "--without-pip", where, cwd=wheel.parent, env=CLEAN)
    python = where / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", python]
    run(*pip, "install", "--no-deps", "--no-index", "-q", wheel, cwd=wheel.parent, env=CLEAN)
    purelib = run(
        python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=where, env=CLEAN
    )
    (Path(purelib.strip()) / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return where


@pytest.fixture
def user_env() -> Iterator[dict[str, str]]:
    """The environment of the user's processes: the test Redis under a key prefix of its
    own, and a PostgreSQL database of its own (dropped afterwards)."""
    base = DATABASE_URL.rsplit("/", 1)[0]
    name = f"dtq_wheel_{uuid.uuid4().hex[:10]}"
    env = dict(CLEAN)
    env.update(
        DTQ_REDIS_URL=REDIS_URL,
        DTQ_DATABASE_URL=f"{base}/{name}",
        DTQ_KEY_PREFIX=f"w{uuid.uuid4().hex[:10]}",
    )
    yield env
    settings = Settings.from_env(env)
    svc = deps.build(settings, pool_size=1)
    try:
        for key in svc.redis.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
            svc.redis.delete(key)
    finally:
        svc.close()
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_wheel_adds_one_import_name_and_every_file_it_needs(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        record = zf.read(f"{info}/RECORD").decode().splitlines()
        top_level = zf.read(f"{info}/top_level.txt").decode().split()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        sources = {n: zf.read(n).decode() for n in names if n.endswith(".py")}

    assert {line.split(",")[0].split("/")[0] for line in record} == {"dtq", info}
    assert top_level == ["dtq"]
    assert "dtq = dtq._impl.workers.cli:main" in entry_points
    for needed in (
        "dtq/__init__.py",
        "dtq/py.typed",
        "dtq/_impl/__init__.py",
        "dtq/_impl/app.py",
        "dtq/_impl/workers/cli/__main__.py",
        "dtq/_impl/schedules/runner.py",
        "dtq/_impl/chalicelib/queue/lua/claim.lua",
        "dtq/_impl/chalicelib/record/sql/queries.sql",
        "dtq/_impl/chalicelib/record/sql/migrations/0001_initial.sql",
        "dtq/_impl/chalicelib/api/dashboard/index.html",
        "dtq/_impl/chalicelib/api/dashboard/static/app.js",
        "dtq/_impl/chalicelib/api/dashboard/static/style.css",
    ):
        assert needed in names
    # Every import of a moved name was rewritten, in the public package too.
    for path, text in sources.items():
        for node in ast.walk(ast.parse(text, path)):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert node.module.partition(".")[0] not in MOVED, (path, node.lineno)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.partition(".")[0] not in MOVED, (path, node.lineno)


def test_a_user_project_with_its_own_workers_and_app_runs_beside_dtq(
    venv: Path, user_env: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    for folder in ("workers", "myapp"):
        (project / folder).mkdir(parents=True)
    (project / "workers" / "__init__.py").write_text('WHO = "user"\n')
    (project / "app.py").write_text('WHO = "user app"\n')
    (project / "myapp" / "__init__.py").write_text("")
    (project / "myapp" / "tasks.py").write_text(USER_TASKS)
    (project / "produce.py").write_text(PRODUCER)
    dtq = venv / "bin" / "dtq"

    assert "applied" in run(dtq, "migrate", cwd=project, env=user_env)
    task_id = run(venv / "bin" / "python", "produce.py", cwd=project, env=user_env).strip()
    journal = ["--offline-db", str(tmp_path / "journal.db")]
    # The recorder child is `python -m dtq._impl.workers.cli record`, started in the
    # user's folder: its name must not be the user's workers.
    worker = subprocess.Popen(
        [dtq, "worker", "--tasks", "myapp.tasks", "--queues", "q", "--burst", *journal],
        cwd=project,
        env=user_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = worker.communicate(timeout=45)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(10)
    assert worker.returncode == 0, output[-3000:]
    assert "user.hello" in output
    assert "Traceback" not in output and "No module named" not in output, output[-3000:]
    assert "stopped (exit status 0)" in output, output[-3000:]  # the recorder child's

    svc = deps.build(Settings.from_env(user_env), pool_size=1)
    try:
        Recorder(svc.queue, svc.store, "test").drain()
        task = svc.tasks.get(task_id)
    finally:
        svc.close()
    assert task["status"] == "succeeded", task
    result = task["result"]
    assert result["x"] == 7
    assert result["workers"] == ["user", str(project / "workers" / "__init__.py")]
    assert result["app"] == ["user app", str(project / "app.py")]
    assert result["dtq"].startswith(str(venv)), result["dtq"]
    assert result["dtq_names_loaded"] == []

    # Module names held in strings: every verb registers, the scheduler's default app is
    # DTQ's (not the user's app.py).
    assert "scheduler" in run(dtq, "--help", cwd=project, env=user_env)
    assert "cron_tick" in run(dtq, "scheduler", "--list", cwd=project, env=user_env)
