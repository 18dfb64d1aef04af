"""Run control: schedule, queue timeout, retries, results, cancellation, approval.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Nullable columns on `runs` (added in place: no table rebuild on SQLite, no
rewrite on PostgreSQL), and three partial indexes that hold only the runs the
sweeper may still have to act on (DESIGN section 11).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_RUN = "phase NOT IN ('COMPLETED', 'FAILED')"
PARTIAL_INDEXES = {
    "ix_runs_queue_deadline": (
        "queue_deadline",
        "queue_deadline IS NOT NULL AND clock_started_at IS NULL",
    ),
    "ix_runs_approval_deadline": ("approval_deadline", "approval_state = 'pending'"),
    "ix_runs_cancel_requested": (
        "cancel_requested_at",
        LIVE_RUN + " AND cancel_requested_at IS NOT NULL",
    ),
}


def _columns() -> list[sa.Column[object]]:
    when = sa.DateTime(timezone=True)
    return [
        sa.Column("not_before", when, nullable=True),
        sa.Column("queue_deadline", when, nullable=True),
        sa.Column("retry_policy", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("cancel_requested_at", when, nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("cancel_by", sa.String(200), nullable=True),
        sa.Column("approval_state", sa.String(10), nullable=True),
        sa.Column("approval_by", sa.String(200), nullable=True),
        sa.Column("approval_reason", sa.Text(), nullable=True),
        sa.Column("approval_at", when, nullable=True),
        sa.Column("approval_deadline", when, nullable=True),
    ]


def upgrade() -> None:
    for column in _columns():
        op.add_column("runs", column)
    for name, (column_name, where) in PARTIAL_INDEXES.items():
        op.create_index(
            name,
            "runs",
            [column_name],
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )


def downgrade() -> None:
    for name in PARTIAL_INDEXES:
        op.drop_index(name, table_name="runs")
    with op.batch_alter_table("runs") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
