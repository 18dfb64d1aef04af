"""Concurrency limits and fair claims across tenants.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

- runs.concurrency_keys: the keys a run listed at creation (shown on the run).
- run_concurrency_keys: the same keys, one row each, so a claim can pass
  over runs holding a key with no free slot.
- concurrency_limits: a row per key and per tenant (`tenant:<id>`, its lane):
  the limit set by PUT /limits/{key}, the slots in use, and for a lane
  whether it may hold waiting runs and when it was last served.
- ix_runs_claimable_by_tenant(_handler): one tenant's waiting runs in claim
  order, which is all a claim reads once it chose the tenant.

Existing data: every tenant with a run gets its lane, marked waiting when it
has a waiting run, its `in_use` the runs it holds leased now (they hold a
slot: their lease's end gives one back).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = {"sqlite_where": sa.text("available = 1"), "postgresql_where": sa.text("available")}
LANE_WAITING = {"sqlite_where": sa.text("waiting = 1"), "postgresql_where": sa.text("waiting")}
FULL_KEY = "in_use >= max_concurrent"
CLAIM_INDEXES = {
    "ix_runs_claimable": ["priority DESC", "created_at", "id"],
    "ix_runs_claimable_by_handler": ["handler", "priority DESC", "created_at", "id"],
}
TENANT_CLAIM_INDEXES = {
    "ix_runs_claimable_by_tenant": ["tenant_id", "priority DESC", "created_at", "id"],
    "ix_runs_claimable_by_tenant_handler": [
        "tenant_id",
        "handler",
        "priority DESC",
        "created_at",
        "id",
    ],
}
# What SQLite's reflection gets wrong when batch mode rebuilds `runs`.
RUNS_AS_DECLARED = [
    sa.Column("available", sa.Boolean(), nullable=False, server_default=sa.text("true"))
]
# Each tenant's lane, from the runs already stored (COALESCE: runs without a
# tenant share the lane `tenant:`, as service.store.limits.tenant_key names it).
LANES_OF_STORED_RUNS = """
INSERT INTO concurrency_limits (key, in_use, waiting, served_seq)
SELECT 'tenant:' || COALESCE(tenant_id, ''),
       SUM(CASE WHEN lease_token IS NOT NULL THEN 1 ELSE 0 END),
       MAX(CASE WHEN available THEN 1 ELSE 0 END) = 1,
       0
FROM runs
GROUP BY COALESCE(tenant_id, '')
"""


def _restore_sqlite_claim_indexes() -> None:
    # a batch rebuild of `runs` on SQLite reflects the claim indexes without DESC
    if op.get_bind().dialect.name == "sqlite":
        for name, columns in CLAIM_INDEXES.items():
            op.drop_index(name, table_name="runs")
            op.create_index(name, "runs", [sa.text(c) for c in columns], **WAITING)


def upgrade() -> None:
    # rebuilt on SQLite, so the new column sits before the table's constraints
    # as create_all writes it (0004 says why); PostgreSQL ALTERs in place
    rebuild = "always" if op.get_bind().dialect.name == "sqlite" else "auto"
    with op.batch_alter_table("runs", recreate=rebuild, reflect_args=RUNS_AS_DECLARED) as batch:
        batch.add_column(sa.Column("concurrency_keys", sa.JSON(), nullable=True))
    _restore_sqlite_claim_indexes()
    for name, columns in TENANT_CLAIM_INDEXES.items():
        op.create_index(name, "runs", [sa.text(c) for c in columns], **WAITING)
    op.create_table(
        "concurrency_limits",
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.Column("in_use", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("waiting", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("served_seq", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("in_use >= 0", name="ck_concurrency_limits_in_use"),
        sa.CheckConstraint(
            "max_concurrent IS NULL OR max_concurrent >= 0", name="ck_concurrency_limits_max"
        ),
    )
    op.create_index(
        "ix_concurrency_limits_turn", "concurrency_limits", ["served_seq", "key"], **LANE_WAITING
    )
    op.create_index(
        "ix_concurrency_limits_full",
        "concurrency_limits",
        ["key"],
        sqlite_where=sa.text(FULL_KEY),
        postgresql_where=sa.text(FULL_KEY),
    )
    op.create_table(
        "run_concurrency_keys",
        sa.Column(
            "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("key", sa.String(250), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_run_concurrency_keys"),
    )
    op.execute(LANES_OF_STORED_RUNS)


def downgrade() -> None:
    op.drop_table("run_concurrency_keys")
    op.drop_index("ix_concurrency_limits_full", table_name="concurrency_limits")
    op.drop_index("ix_concurrency_limits_turn", table_name="concurrency_limits")
    op.drop_table("concurrency_limits")
    for name in TENANT_CLAIM_INDEXES:
        op.drop_index(name, table_name="runs")
    with op.batch_alter_table("runs", reflect_args=RUNS_AS_DECLARED) as batch:
        batch.drop_column("concurrency_keys")
    _restore_sqlite_claim_indexes()
