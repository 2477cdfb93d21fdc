"""Migrations on a fresh database, twice in a row, give the same schema."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from chalicelib.core import passwords
from chalicelib.core.settings import Settings
from chalicelib.record import migrate
from chalicelib.record.sql import migrations, q, queries
from tests.conftest import DATABASE_URL

SCHEMA_SQL = """
SELECT table_name, column_name, data_type, is_nullable, column_default
FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2
"""
INDEX_SQL = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"


@pytest.fixture
def fresh_url() -> Iterator[str]:
    base = DATABASE_URL.rsplit("/", 1)[0]
    name = f"dtq_mig_{uuid.uuid4().hex[:8]}"
    yield f"{base}/{name}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _schema(url: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with psycopg.connect(url) as conn:
        return conn.execute(SCHEMA_SQL).fetchall(), conn.execute(INDEX_SQL).fetchall()


def test_fresh_database_twice_gives_the_same_schema(fresh_url: str) -> None:
    assert migrate.ensure_database(fresh_url) is True
    assert migrate.ensure_database(fresh_url) is False
    first = migrate.apply_migrations(fresh_url)
    assert first == [f"{v:04d}_{n}" for v, n, _ in migrations()]
    schema = _schema(fresh_url)
    assert migrate.apply_migrations(fresh_url) == []
    assert _schema(fresh_url) == schema
    tables = {row[0] for row in schema[0]}
    assert {
        "dtq_tasks",
        "dtq_task_events",
        "dtq_users",
        "dtq_workers",
        "dtq_schedules",
        "dtq_schedule_fires",
        "dtq_schema_migrations",
    } <= tables


def test_migrate_creates_users_once_and_updates_changed_passwords(fresh_url: str) -> None:
    s = Settings(database_url=fresh_url, admin_password="first-pass", worker_password="w-pass-1")
    migrate.ensure_database(fresh_url)
    migrate.apply_migrations(fresh_url)
    assert migrate.ensure_users(s, log_n=10) == ["admin", "worker"]
    assert migrate.ensure_users(s, log_n=10) == []
    s2 = Settings(database_url=fresh_url, admin_password="second-pass", worker_password="w-pass-1")
    assert migrate.ensure_users(s2, log_n=10) == ["admin"]
    with psycopg.connect(fresh_url) as conn:
        rows = dict(conn.execute("SELECT username, password_hash FROM dtq_users").fetchall())
    assert passwords.verify_password("second-pass", rows["admin"])
    assert rows["admin"].startswith("$scrypt$")


def test_every_named_query_runs_against_the_schema(clean_db: str) -> None:
    """A typo in queries.sql (syntax, table, column) fails here, not in production.
    Each query runs with NULL parameters inside a rolled-back savepoint; constraint
    errors are fine (the SQL was understood), schema errors are not."""
    checked = 0
    with psycopg.connect(clean_db, autocommit=True) as conn:
        for name, sql in queries().items():
            if sql.startswith("COPY"):
                continue
            params = dict.fromkeys(re.findall(r"%\((\w+)\)s", sql))
            try:
                with conn.transaction(force_rollback=True):
                    conn.execute(sql, params or None)
            except (psycopg.errors.IntegrityError, psycopg.errors.DataError):
                pass
            except psycopg.errors.ProgrammingError as exc:
                raise AssertionError(f"query {name!r}: {exc}") from exc
            checked += 1
    assert checked == sum(1 for sql in queries().values() if not sql.startswith("COPY"))
    assert q("get_task").startswith("SELECT")
