"""Applies the forward-only SQL migrations and creates the configured users.

Each migration runs in its own transaction under an advisory lock, so two processes
migrating at once (several containers starting) apply each file exactly once.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from chalicelib.core import passwords
from chalicelib.core.errors import Unavailable
from chalicelib.core.settings import Settings
from chalicelib.record.sql import migrations

#: Arbitrary constant shared by every DTQ process: the key of the migration lock.
_LOCK_ID = 0x445451


def ensure_database(database_url: str) -> bool:
    """Create the database named in the URL if it is missing. True when created."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists:
                return False
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:
                return False  # created concurrently by another process
            return True
    except psycopg.OperationalError as exc:
        raise Unavailable(f"PostgreSQL is unavailable: {exc}".splitlines()[0]) from exc


def apply_migrations(database_url: str) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date)."""
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS dtq_schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM dtq_schema_migrations")}
            for version, name, text in migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(text.encode())
                    conn.execute(
                        "INSERT INTO dtq_schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied.append(f"{version:04d}_{name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied


def ensure_users(settings: Settings, log_n: int = passwords.LOG_N) -> list[str]:
    """Create or update the admin and worker users whose passwords are configured."""
    changed = []
    wanted = [
        (settings.admin_username, settings.admin_password, "admin"),
        (settings.worker_username, settings.worker_password, "worker"),
    ]
    with psycopg.connect(settings.database_url, autocommit=True, connect_timeout=5) as conn:
        for username, password, role in wanted:
            if not password:
                continue
            row = conn.execute(
                "SELECT password_hash, role FROM dtq_users WHERE username = %s", (username,)
            ).fetchone()
            if row and row[1] == role and passwords.verify_password(password, row[0]):
                continue
            conn.execute(
                "INSERT INTO dtq_users (username, password_hash, role) VALUES (%s, %s, %s) "
                "ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
                " role = EXCLUDED.role",
                (username, passwords.hash_password(password, log_n=log_n), role),
            )
            changed.append(username)
    return changed


def migrate(settings: Settings) -> list[str]:
    """`dtq migrate`: database, schema, users. Idempotent."""
    ensure_database(settings.database_url)
    applied = apply_migrations(settings.database_url)
    ensure_users(settings)
    return applied
