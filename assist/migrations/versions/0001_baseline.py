"""Baseline: the schema before the board (calls, events, dead letters, agents, rule
versions, tokens, suggestion feedback).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from assist.migrations.baseline import create_missing, metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_missing(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
