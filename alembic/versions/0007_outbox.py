"""Alerts and traces: the events outbox, and the trace a run belongs to.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

- events: run.failed, run.stale and governance.incomplete, written in the
  transaction that caused them and delivered after commit as Standard
  Webhooks; each row carries its delivery state (pending, delivered, failed).
- runs.traceparent: the W3C traceparent of the request that created the run.
  A plain ADD COLUMN on both databases: the column is nullable and last.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = "state = 'pending'"


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(200), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_to", sa.JSON(), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="ck_events_state"),
    )
    op.create_index("ix_events_created", "events", ["created_at", "id"])
    op.create_index("ix_events_tenant_created", "events", ["tenant_id", "created_at", "id"])
    op.create_index(
        "ix_events_due",
        "events",
        ["next_attempt_at"],
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )
    op.add_column("runs", sa.Column("traceparent", sa.String(55), nullable=True))


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+): a batch rebuild of runs would lose the
    # DESC of its claim indexes (see 0004)
    op.drop_column("runs", "traceparent")
    op.drop_index("ix_events_due", table_name="events")
    op.drop_index("ix_events_tenant_created", table_name="events")
    op.drop_index("ix_events_created", table_name="events")
    op.drop_table("events")
