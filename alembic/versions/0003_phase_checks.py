"""Phases: the database keeps phase values to the seven (CHECK constraints).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

The phase table itself is enforced where moves are written (the store's
transition); these constraints are the last line: a phase no code knows can
never be stored, whoever writes the row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The seven phases as of this revision (service.model.phases.RunPhase).
PHASES = (
    "'CREATED', 'AUTHORIZED', 'EXECUTING', 'GOVERNANCE_CHECK', 'FINALIZING', 'COMPLETED', 'FAILED'"
)
CHECKS = {
    "runs": [("ck_runs_phase", "phase")],
    "transitions": [
        ("ck_transitions_from_phase", "from_phase"),
        ("ck_transitions_to_phase", "to_phase"),
    ],
}


# What SQLite's reflection gets wrong when batch mode rebuilds `runs`: the
# default of `available` comes back wrapped, and the claim indexes lose DESC.
RUNS_AS_DECLARED = [
    sa.Column("available", sa.Boolean(), nullable=False, server_default=sa.text("true"))
]
WAITING = {"sqlite_where": sa.text("available = 1"), "postgresql_where": sa.text("available")}
CLAIM_INDEXES = {
    "ix_runs_claimable": ["priority DESC", "created_at", "id"],
    "ix_runs_claimable_by_handler": ["handler", "priority DESC", "created_at", "id"],
}


def _alter(checks: dict[str, list[tuple[str, str]]], add: bool) -> None:
    # batch: SQLite changes a CHECK only by rebuilding the table; PostgreSQL ALTERs it
    for table, constraints in checks.items():
        reflect = RUNS_AS_DECLARED if table == "runs" else ()
        with op.batch_alter_table(table, reflect_args=reflect) as batch:
            for name, column in constraints:
                if add:
                    batch.create_check_constraint(name, f"{column} IN ({PHASES})")
                else:
                    batch.drop_constraint(name, type_="check")
    if op.get_bind().dialect.name == "sqlite":
        for name, columns in CLAIM_INDEXES.items():
            op.drop_index(name, table_name="runs")
            op.create_index(name, "runs", [sa.text(c) for c in columns], **WAITING)


def upgrade() -> None:
    _alter(CHECKS, add=True)


def downgrade() -> None:
    _alter(CHECKS, add=False)
