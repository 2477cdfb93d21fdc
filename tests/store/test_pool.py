"""The connection pool across a database restart (every backend terminated)."""

from __future__ import annotations

import psycopg

from chalicelib.core.errors import Unavailable
from chalicelib.service.deps import Services
from tests.conftest import DATABASE_URL


def terminate_backends(services: Services) -> int:
    """What a PostgreSQL restart does to the pool's connections."""
    with psycopg.connect(DATABASE_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        dbname = services.settings.database_url.rsplit("/", 1)[-1]
        return len(
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            ).fetchall()
        )


def test_after_a_restart_a_call_answers_503_at_worst_and_the_pool_heals(
    services: Services,
) -> None:
    first = services.tasks.enqueue("t")
    assert terminate_backends(services) >= 1
    outcomes = []
    for _ in range(services.pool.max_size + 1):
        try:
            outcomes.append(services.tasks.get(first["id"])["id"])
        except Unavailable:  # a connection lent right after use is checked by its use
            outcomes.append("503")
    # Each broken connection fails one call at most, and is then replaced.
    assert outcomes.count("503") <= services.pool.max_size and outcomes[-1] == first["id"]
    assert services.tasks.enqueue("t")["id"] != first["id"]
