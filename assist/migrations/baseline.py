"""The schema of revision 0001 (callwatch before the board), frozen: what later revisions
start from, and what a store made before migrations is completed with before stamping."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Connection

metadata = MetaData()

Table(
    "calls",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("mode", String(16), nullable=False),
    Column("sources", JSON, nullable=False),
    Column("duration_s", Float),
    Column("score", Float),
    Column("alerts", Integer, nullable=False),
    Column("model", String(128)),
    Column("report", JSON),
    Column("updated_at", String(32), nullable=False),
)
Table(
    "events",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("type", String(32), nullable=False, index=True),
    Column("t", Float, nullable=False),
    Column("payload", Text, nullable=False),
)
Table(
    "webhook_dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("delivery_id", String(64), nullable=False),
    Column("call_id", String(128), index=True),
    Column("event_type", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
)
Table(
    "agents",
    metadata,
    Column("agent_id", String(128), primary_key=True),
    Column("voiceprint", JSON, nullable=False),
    Column("speech_s", Float, nullable=False),
    Column("source", Text, nullable=False),
    Column("enrolled_at", String(32), nullable=False),
)
Table(
    "rule_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pack", String(128), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("file", Text, nullable=False),
    Column("author", String(256), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("summary", JSON, nullable=False),
    UniqueConstraint("pack", "version", name="uq_rule_versions_pack_version"),
)
Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("agent_id", String(128)),
    Column("label", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("revoked_at", String(32)),
)
Table(
    "suggestion_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(128), nullable=False, index=True),
    Column("suggestion_id", String(32), nullable=False),
    Column("agent_id", String(128)),
    Column("verdict", String(16), nullable=False),
    Column("intent", String(128), index=True),
    Column("rule_id", String(128)),
    Column("line", Integer),
    Column("comment", Text),
    Column("at", String(32), nullable=False),
)


def create_missing(conn: Connection) -> None:
    """Create the baseline tables a store lacks (with their indexes); others are left alone."""
    metadata.create_all(conn, checkfirst=True)
