"""The initial schema: runs, their transition history, audit expectations and acks.

Revision ID: 0001
Revises:
Create Date: 2025-11-28

Written by hand to match service/store/tables.py exactly (a test compares the
migrated database with that metadata on both backends). Columns that
tables.py types as UTCDateTime are plain DateTime(timezone=True) here: the
decorator only converts values in Python, the stored type is the same.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a bigint.
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)
LIVE = "phase NOT IN ('COMPLETED', 'FAILED')"
ONE_FINALIZE_RUN = "domain = 'orchestrator' AND action = 'finalize_run'"


def _partial(where: str) -> dict[str, sa.TextClause]:
    """The same WHERE clause for both dialects' partial indexes."""
    return {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)}


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(200), nullable=True),
        sa.Column("handler", sa.String(200), nullable=True),
        sa.Column("input", sa.JSON(), nullable=True),
        sa.Column("phase", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.Column("max_attempts", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.Column("priority", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("run_timeout_ms", sa.Integer(), nullable=False),
        sa.Column("idempotency_scope", sa.String(500), nullable=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("execution_success", sa.Boolean(), nullable=True),
        sa.Column("governance_passed", sa.Boolean(), nullable=True),
        sa.Column("governance_checked_at", TIMESTAMP, nullable=True),
        sa.Column("governance_reconciliation", sa.JSON(), nullable=True),
        sa.Column("clock_started_at", TIMESTAMP, nullable=True),
        sa.Column("finalize_deadline", TIMESTAMP, nullable=True),
        sa.Column("history_length", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("available", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("lease_worker_id", sa.String(200), nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runs_idempotency_scope", "runs", ["idempotency_scope"], unique=True)
    op.create_index("ix_runs_created", "runs", ["created_at", "id"])
    op.create_index("ix_runs_phase_created", "runs", ["phase", "created_at", "id"])
    op.create_index("ix_runs_tenant_created", "runs", ["tenant_id", "created_at", "id"])
    op.create_index("ix_runs_handler_created", "runs", ["handler", "created_at", "id"])
    op.create_index(
        "ix_runs_claimable",
        "runs",
        ["priority", "created_at", "id"],
        # as each dialect renders `WHERE runs.available` (SQLite's planner needs the match)
        sqlite_where=sa.text("available = 1"),
        postgresql_where=sa.text("available"),
    )
    op.create_index(
        "ix_runs_claimable_by_handler",
        "runs",
        ["handler", "priority", "created_at", "id"],
        sqlite_where=sa.text("available = 1"),
        postgresql_where=sa.text("available"),
    )
    op.create_index(
        "ix_runs_lease_expiry",
        "runs",
        ["lease_expires_at"],
        **_partial("lease_expires_at IS NOT NULL"),
    )
    op.create_index(
        "ix_runs_live_deadline",
        "runs",
        ["finalize_deadline"],
        **_partial(LIVE + " AND finalize_deadline IS NOT NULL"),
    )

    op.create_table(
        "transitions",
        sa.Column("id", AUTO_ID, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("from_phase", sa.String(20), nullable=False),
        sa.Column("to_phase", sa.String(20), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "seq", name="uq_transitions_run_seq"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
    )

    op.create_table(
        "expectations",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("domain", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("deadline_ms", sa.Integer(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "domain", "action", name="pk_expectations"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
    )

    op.create_table(
        "acks",
        sa.Column("id", AUTO_ID, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("domain", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("result_id", sa.String(200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_acks_run", "acks", ["run_id", "id"])
    op.create_index(
        "uq_acks_one_finalize_run", "acks", ["run_id"], unique=True, **_partial(ONE_FINALIZE_RUN)
    )


def downgrade() -> None:
    # Children first: they hold foreign keys to runs. Dropping a table drops its indexes.
    op.drop_table("acks")
    op.drop_table("expectations")
    op.drop_table("transitions")
    op.drop_table("runs")
