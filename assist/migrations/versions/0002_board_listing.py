"""The board's listing columns on calls (agent, start time, language, facts), filled in
from the stored reports, and alert triage states.

Revision ID: 0002
Revises: 0001

A store upgraded in place by callwatch before migrations may have some of this already:
only what is missing is added.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from assist.facts import call_facts

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = (
    ("agent_id", sa.String(128)),
    ("started_at", sa.Float()),
    ("language", sa.String(16)),
    ("facts", sa.JSON()),
)


def upgrade() -> None:
    bind = op.get_bind()
    insp = sa.inspect(bind)
    have = {c["name"] for c in insp.get_columns("calls")}
    for name, type_ in COLUMNS:
        if name not in have:
            op.add_column("calls", sa.Column(name, type_))
    indexes = {i["name"] for i in insp.get_indexes("calls")}
    for name in ("agent_id", "started_at"):
        if f"ix_calls_{name}" not in indexes:
            op.create_index(f"ix_calls_{name}", "calls", [name])
    if not insp.has_table("alert_states"):
        op.create_table(
            "alert_states",
            sa.Column("call_id", sa.String(128), primary_key=True),
            sa.Column("seq", sa.Integer(), primary_key=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("assignee", sa.String(256)),
            sa.Column("acked_by", sa.String(256)),
            sa.Column("acked_at", sa.String(32)),
            sa.Column("note", sa.Text()),
            sa.Column("updated_by", sa.String(256)),
            sa.Column("updated_at", sa.String(32)),
        )
    _fill_listing(bind)


def _fill_listing(bind: Any) -> None:
    calls = sa.table(
        "calls",
        sa.column("call_id", sa.String),
        sa.column("report", sa.JSON),
        sa.column("agent_id", sa.String),
        sa.column("started_at", sa.Float),
        sa.column("language", sa.String),
        sa.column("facts", sa.JSON),
    )
    ids = list(bind.execute(sa.select(calls.c.call_id).where(calls.c.facts.is_(None))).scalars())
    for call_id in ids:
        report = bind.execute(sa.select(calls.c.report).where(calls.c.call_id == call_id)).scalar()
        report = dict(report or {})
        started = report.get("started_at")
        bind.execute(
            calls.update()
            .where(calls.c.call_id == call_id)
            .values(
                agent_id=report.get("agent_id"),
                started_at=float(started) if isinstance(started, int | float) else None,
                language=report.get("language"),
                facts=call_facts(report),
            )
        )


def downgrade() -> None:
    op.drop_table("alert_states")
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_started_at")
        batch.drop_index("ix_calls_agent_id")
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
