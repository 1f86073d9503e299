"""Trust at scale: live calls written as they happen (status, ended reason, instance,
heartbeat, protocol, channels, retention purge time), the audit chain with every row stored
so far chained, and the indexes the board filters by (0002's too, which a store upgraded in
place by callwatch before migrations lacks).

Revision ID: 0003
Revises: 0002

Calls stored before are ``ended``. The chain is started in this order: rule versions, tokens
(created, then revoked), events (by call and seq), alert states; each record's time is the
upgrade's, its content that of the row as it is now (assist/chain.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from assist import chain

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def call_columns() -> list[sa.Column[Any]]:
    """New each time: a Column belongs to one table, and one process may migrate many stores."""
    return [
        sa.Column("status", sa.String(16), nullable=False, server_default="ended"),
        sa.Column("ended_reason", sa.String(64)),
        sa.Column("instance_id", sa.String(128)),
        sa.Column("live_at", sa.Float()),
        sa.Column("purged_at", sa.String(32)),
        sa.Column("protocol", sa.String(32)),
        sa.Column("channels", sa.JSON()),
    ]


BATCH = 2000


def upgrade() -> None:
    for col in call_columns():
        op.add_column("calls", col)
    # a store upgraded in place before migrations got 0002's columns but not its indexes
    have = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("calls")}
    for name in ("agent_id", "started_at"):
        if f"ix_calls_{name}" not in have:
            op.create_index(f"ix_calls_{name}", "calls", [name])
    op.create_index("ix_calls_status", "calls", ["status"])
    op.create_index("ix_calls_agent_id_started_at", "calls", ["agent_id", "started_at"])
    op.create_index("ix_events_call_id_type", "events", ["call_id", "type"])
    op.create_table(
        "audit_chain",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ref", sa.String(300), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column("call_id", sa.String(128)),
    )
    op.create_index("ix_audit_chain_call_id", "audit_chain", ["call_id"])
    op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    bind = op.get_bind()
    _fill_protocol(bind)
    _chain_existing(bind)


def _fill_protocol(bind: Any) -> None:
    calls = sa.table(
        "calls",
        sa.column("call_id", sa.String),
        sa.column("report", sa.JSON),
        sa.column("protocol", sa.String),
        sa.column("channels", sa.JSON),
    )
    for call_id in list(bind.execute(sa.select(calls.c.call_id)).scalars()):
        report = bind.execute(sa.select(calls.c.report).where(calls.c.call_id == call_id)).scalar()
        report = report if isinstance(report, dict) else {}
        channels = report.get("channels")
        protocol = report.get("protocol")
        bind.execute(
            calls.update()
            .where(calls.c.call_id == call_id)
            .values(
                protocol=protocol[:32] if isinstance(protocol, str) else None,
                channels=list(channels) if isinstance(channels, list) else None,
            )
        )


def _existing(bind: Any) -> Iterator[chain.Pending]:
    """Every row to chain, in chain order, read in pages (a big store never sits in memory)."""
    rv = sa.table(
        "rule_versions",
        *(sa.column(c) for c in ("id", "pack", "version", "text", "sha256", "file", "author")),
        *(sa.column(c) for c in ("comment", "created_at")),
    )
    for r in bind.execute(sa.select(rv).order_by(rv.c.id)).mappings():
        yield chain.Pending(
            chain.RULE_VERSION,
            chain.rule_version_ref(r["pack"], r["version"]),
            chain.rule_version_content(r),
        )
    tk = sa.table(
        "tokens",
        *(sa.column(c) for c in ("id", "token_sha256", "role", "agent_id", "label")),
        *(sa.column(c) for c in ("created_at", "revoked_at")),
    )
    for r in bind.execute(sa.select(tk).order_by(tk.c.id)).mappings():
        ref = chain.token_ref(r["id"])
        yield chain.Pending(chain.TOKEN_CREATED, ref, chain.token_created_content(r))
        if r["revoked_at"] is not None:
            yield chain.Pending(chain.TOKEN_REVOKED, ref, chain.token_revoked_content(r))
    ev = sa.table("events", sa.column("call_id"), sa.column("seq"), sa.column("payload"))
    after: tuple[str, int] | None = None
    while True:
        q = sa.select(ev).order_by(ev.c.call_id, ev.c.seq).limit(BATCH)
        if after is not None:
            q = q.where(sa.tuple_(ev.c.call_id, ev.c.seq) > sa.tuple_(*after))
        page = bind.execute(q).all()
        for call_id, seq, payload in page:
            yield chain.Pending(
                chain.EVENT, chain.event_ref(call_id, seq), chain.event_content(payload)
            )
        if len(page) < BATCH:
            break
        after = (page[-1][0], page[-1][1])
    st = sa.table(
        "alert_states",
        sa.column("call_id"),
        sa.column("seq"),
        *(sa.column(c) for c in chain.ALERT_STATE_FIELDS),
    )
    for r in bind.execute(sa.select(st).order_by(st.c.call_id, st.c.seq)).mappings():
        yield chain.Pending(
            chain.ALERT_STATE,
            chain.event_ref(r["call_id"], r["seq"]),
            chain.alert_state_content(r),
        )


def _chain_existing(bind: Any) -> None:
    records = sa.table(
        "audit_chain",
        *(sa.column(c) for c in ("id", "kind", "ref", "content_sha256", "prev_hash", "hash")),
        *(sa.column(c) for c in ("created_at", "detail", "call_id")),
    )
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    last_id, last_hash = 0, chain.GENESIS
    batch: list[chain.Pending] = []

    def flush() -> None:
        nonlocal last_id, last_hash
        linked = chain.link(last_id, last_hash, batch, at)
        bind.execute(
            records.insert(),
            [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "ref": r.ref,
                    "content_sha256": r.content_sha256,
                    "prev_hash": r.prev_hash,
                    "hash": r.hash,
                    "created_at": r.created_at,
                    "detail": r.detail,
                    "call_id": r.call_id,
                }
                for r in linked
            ],
        )
        last_id, last_hash = linked[-1].id, linked[-1].hash
        batch.clear()

    for p in _existing(bind):
        batch.append(p)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    head = sa.table(
        "chain_head",
        sa.column("id"),
        sa.column("last_id"),
        sa.column("last_hash"),
        sa.column("updated_at"),
    )
    bind.execute(head.insert().values(id=1, last_id=last_id, last_hash=last_hash, updated_at=at))


def downgrade() -> None:
    op.drop_table("chain_head")
    op.drop_index("ix_audit_chain_call_id", table_name="audit_chain")
    op.drop_table("audit_chain")
    op.drop_index("ix_events_call_id_type", table_name="events")
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_agent_id_started_at")
        batch.drop_index("ix_calls_status")
        for col in reversed(call_columns()):
            batch.drop_column(col.name)
