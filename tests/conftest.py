"""Shared fixtures: real Redis and real PostgreSQL, isolated cheaply per test.

- Redis: each test gets its own key prefix (DTQ_KEY_PREFIX), which also proves that the
  prefix is honoured everywhere; tests use database 15 so they never touch dev data.
- PostgreSQL: one test database per pytest session (named after its pid, so several
  sessions can run at once), migrated once; each test starts from empty tables
  (TRUNCATE is ~100x cheaper than a database per test).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

# A developer's shell must not change what the tests see.
for _var in [v for v in os.environ if v.startswith("DTQ_") and not v.startswith("DTQ_TEST_")]:
    del os.environ[_var]

from chalicelib.core.settings import Settings  # noqa: E402
from chalicelib.record import migrate  # noqa: E402
from chalicelib.service import deps  # noqa: E402
from tests.workers.procs import Proxy  # noqa: E402

#: The Redis Cluster fixtures (a three-node cluster, started only when a test asks).
pytest_plugins = ("tests.cluster.fixtures",)

REDIS_URL = os.environ.get("DTQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DATABASE_URL = (
    os.environ.get("DTQ_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/dtq_test")
    + f"_{os.getpid()}"
)


def _drop_stale_databases(conn: psycopg.Connection[tuple[object, ...]], prefix: str) -> None:
    """Remove test databases left by sessions that were killed."""
    for (name,) in conn.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "\\_%",)
    ).fetchall():
        pid = str(name).rsplit("_", 1)[-1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """The session's test database, migrated from scratch once."""
    try:
        r = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        r.ping()
        r.close()
    except redis.RedisError as exc:  # fail loudly: a skipped test is not a passing test
        pytest.exit(f"Redis is not answering at {REDIS_URL}: {exc}", returncode=3)
    base = DATABASE_URL.rsplit("/", 1)[0]
    name = DATABASE_URL.rsplit("/", 1)[1]
    try:
        with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=3) as conn:
            _drop_stale_databases(conn, name.rsplit("_", 1)[0])
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.OperationalError as exc:
        pytest.exit(f"PostgreSQL is not answering at {base}: {exc}", returncode=3)
    migrate.ensure_database(DATABASE_URL)
    migrate.apply_migrations(DATABASE_URL)
    yield DATABASE_URL
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def clean_db(database_url: str) -> str:
    """Every DTQ table empty (found in the catalog, so a new migration's tables are
    included without anyone remembering to list them here)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename LIKE 'dtq\\_%' AND tablename <> 'dtq_schema_migrations'"
            )
        ]
        conn.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
    return database_url


@pytest.fixture
def settings(clean_db: str) -> Settings:
    return Settings(
        redis_url=REDIS_URL,
        database_url=clean_db,
        key_prefix=f"t{uuid.uuid4().hex[:10]}",
        jwt_secret="test-secret-" + "x" * 32,
        admin_password="admin-password",
        worker_password="worker-password",
    )


@pytest.fixture
def services(settings: Settings) -> Iterator[deps.Services]:
    svc = deps.build(settings, pool_size=8)
    yield svc
    for key in svc.redis.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
        svc.redis.delete(key)
    svc.close()


@pytest.fixture
def proxy(settings: Settings) -> Iterator[Proxy]:
    """A TCP proxy to the test Redis that a test can cut (Redis "down" for whoever
    connects through it, without touching the server other tests share)."""
    target = urlsplit(settings.redis_url)
    p = Proxy(target.hostname or "127.0.0.1", target.port or 6379)
    yield p
    p.close()
