"""Claims: idempotency (the key of the claim that took a lease) and index order.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

A claim whose answer is lost left its run leased to a worker that never
learned of it, until the lease expired and the sweeper failed the run as
"worker lost". Sent again with the same claim_id, the claim now returns the
lease it already took.

The claim indexes now list priority DESC, as the claim sorts: with the
ascending column SQLite read the index but sorted every run of the top
priority in a temporary B-tree, on every claim (a cost growing with the
queue).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAS_CLAIM = "lease_claim_id IS NOT NULL"
WAITING = {"sqlite_where": sa.text("available = 1"), "postgresql_where": sa.text("available")}


def _claim_indexes(priority: str) -> None:
    op.create_index(
        "ix_runs_claimable", "runs", [sa.text(priority), "created_at", "id"], **WAITING
    )
    op.create_index(
        "ix_runs_claimable_by_handler",
        "runs",
        ["handler", sa.text(priority), "created_at", "id"],
        **WAITING,
    )


def _drop_claim_indexes() -> None:
    op.drop_index("ix_runs_claimable", table_name="runs")
    op.drop_index("ix_runs_claimable_by_handler", table_name="runs")


def upgrade() -> None:
    op.add_column("runs", sa.Column("lease_claim_id", sa.String(100), nullable=True))
    op.create_index(
        "ix_runs_lease_claim",
        "runs",
        ["lease_worker_id", "lease_claim_id"],
        sqlite_where=sa.text(HAS_CLAIM),
        postgresql_where=sa.text(HAS_CLAIM),
    )
    _drop_claim_indexes()
    _claim_indexes("priority DESC")


def downgrade() -> None:
    _drop_claim_indexes()
    _claim_indexes("priority")
    op.drop_index("ix_runs_lease_claim", table_name="runs")
    # SQLite drops an unindexed column in place since 3.35 (no table rebuild)
    op.drop_column("runs", "lease_claim_id")
