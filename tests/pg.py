"""Throwaway PostgreSQL databases for tests, on the local server (127.0.0.1:5432, user
postgres, trust). Unreachable: the test is skipped with the reason, but fails in CI."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

ADMIN_URL = os.environ.get(
    "CALLWATCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def url_for(name: str) -> str:
    """The SQLAlchemy URL of database ``name`` on the test server."""
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def unreachable() -> str | None:
    """Why the test server cannot be used, or None."""
    try:
        import psycopg

        with psycopg.connect(_dsn(ADMIN_URL), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL not reachable at {ADMIN_URL}: {exc}"
    return None


def require() -> None:
    """Skip (locally) or fail (CI) when the test server cannot be used."""
    reason = unreachable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(_dsn(ADMIN_URL), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


@contextmanager
def throwaway_database(prefix: str = "cw") -> Iterator[str]:
    """A new empty database (its URL), dropped afterwards even if connections remain."""
    require()
    name = f"{prefix}_{secrets.token_hex(4)}".lower()
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield url_for(name)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reset(url: str) -> None:
    """Empty a throwaway database (every table, the schema's history) for the next test."""
    import psycopg

    with psycopg.connect(_dsn(url), autocommit=True, connect_timeout=5) as conn:
        # connections an earlier test's stores left in their pools would hold locks
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
