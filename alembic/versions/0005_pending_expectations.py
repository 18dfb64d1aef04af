"""The owed feed's index: the domain expectations live runs still wait for.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

- pending_expectations: one row per (run, domain, action) a run in CREATED …
  GOVERNANCE_CHECK still owes, its verdict not yet recorded, no timely ack of
  it recorded, orchestrator/finalize_run aside (service.store.owed keeps it
  from here on). GET /domains/{domain}/owed reads it alone, so the feed's
  cost follows the live runs, never the finished ones.
- Filled from the runs that are live when it is created, in the same
  transaction, so a domain polling right after the upgrade misses none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWING = "'CREATED', 'AUTHORIZED', 'EXECUTING', 'GOVERNANCE_CHECK'"

# Every expectation of a live, unjudged run that no timely ack answered yet
# (a late ack never counts as evidence: service.model.audit.reconcile).
BACKFILL = f"""
INSERT INTO pending_expectations
    (run_id, domain, action, tenant_id, handler, phase, created_at)
SELECT e.run_id, e.domain, e.action, r.tenant_id, r.handler, r.phase, r.created_at
FROM expectations e
JOIN runs r ON r.id = e.run_id
WHERE r.phase IN ({OWING})
  AND r.governance_passed IS NULL
  AND e.domain <> 'orchestrator'
  AND NOT EXISTS (
      SELECT 1 FROM acks a
      WHERE a.run_id = e.run_id AND a.domain = e.domain AND a.action = e.action
        AND a.late = false
  )
"""


def upgrade() -> None:
    op.create_table(
        "pending_expectations",
        sa.Column(
            "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("domain", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("tenant_id", sa.String(200), nullable=True),
        sa.Column("handler", sa.String(200), nullable=True),
        sa.Column("phase", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "domain", "action", name="pk_pending_expectations"),
        sa.CheckConstraint(f"phase IN ({OWING})", name="ck_pending_expectations_phase"),
    )
    op.create_index(
        "ix_pending_expectations_feed",
        "pending_expectations",
        ["domain", "created_at", "run_id", "action"],
    )
    op.create_index(
        "ix_pending_expectations_phase",
        "pending_expectations",
        ["domain", "phase", "created_at", "run_id", "action"],
    )
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_index("ix_pending_expectations_phase", table_name="pending_expectations")
    op.drop_index("ix_pending_expectations_feed", table_name="pending_expectations")
    op.drop_table("pending_expectations")
