"""The store's schema migrations (Alembic), run when a store is opened.

``upgrade_schema(engine)`` brings any store to the newest revision: an empty database gets
every table; a store made by a callwatch older than migrations (tables but no
``alembic_version``) is recognised by its columns, stamped at the revision it matches, then
upgraded. Upgrading holds a lock (PostgreSQL: an advisory lock; SQLite: ``BEGIN IMMEDIATE``)
so two instances starting at once upgrade once. No alembic.ini is needed; the
``callwatch db upgrade|current`` commands wrap these functions.

Revisions (assist/migrations/versions):
- 0001 baseline: the schema before the board (calls, events, dead letters, agents, rule
  versions, tokens, suggestion feedback);
- 0002 the board's listing columns (agent, start, language, facts, filled from the reports)
  and alert triage states;
- 0003 live calls (status, instance, heartbeat, protocol, channels, purge time), the audit
  chain with every existing row chained, and the indexes the board filters by.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

HEAD = "0003"
SCRIPTS = Path(__file__).resolve().parent
LOCK_KEY = 0x63616C6C77617463  # pg_advisory_xact_lock key: "callwatc"
LISTING_COLUMNS = {"agent_id", "started_at", "language", "facts"}


class MigrationError(RuntimeError):
    """The store's schema cannot be brought up to date; the message says why."""


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def legacy_revision(conn: Connection) -> str | None:
    """The revision a store made before migrations matches (None: not such a store)."""
    insp = inspect(conn)
    tables = set(insp.get_table_names())
    if "alembic_version" in tables or "calls" not in tables:
        return None
    columns = {c["name"] for c in insp.get_columns("calls")}
    return "0002" if columns >= LISTING_COLUMNS and "alert_states" in tables else "0001"


def upgrade_schema(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the store to ``revision``; returns (revision before, revision after)."""
    if revision in ("head", HEAD):
        with engine.connect() as conn:
            now = current_revision(conn)
        if now == HEAD:
            return now, now
    try:
        with _upgrade_lock(engine) as conn:
            before = current_revision(conn)  # again: another instance may have just done it
            cfg = alembic_config(conn)
            if before is None:
                legacy = legacy_revision(conn)
                if legacy is not None:
                    from assist.migrations.baseline import create_missing

                    create_missing(conn)  # a very old store may lack a later baseline table
                    command.stamp(cfg, legacy)
            command.upgrade(cfg, revision)
            return before, current_revision(conn)
    except CommandError as exc:
        raise MigrationError(
            f"{exc} (a store upgraded by a newer callwatch cannot be opened by this one)"
        ) from exc


@contextmanager
def _upgrade_lock(engine: Engine) -> Iterator[Connection]:
    """One connection in one transaction that no other upgrader can enter."""
    with engine.connect() as conn:
        dialect = conn.dialect.name
        if dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA busy_timeout=120000")  # a big store takes a while
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            if dialect == "sqlite":
                conn.exec_driver_sql("PRAGMA busy_timeout=5000")
