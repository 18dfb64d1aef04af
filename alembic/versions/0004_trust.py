"""Trust: API keys, Idempotency-Key answers, actors, and the sealed evidence chain.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

- api_keys: keys are random; only a hash of the secret is stored.
- idempotency_keys: the first answer to an Idempotency-Key, per principal.
- runs.created_by, transitions.actor, acks.actor: who made each record.
- runs.chain_length / chain_head, and chain_seq / hash on transitions and
  acks: each entry is HMAC-chained to the one before, with a key the
  database never holds, so an edit of the stored history shows.
- ix_runs_lease_claim becomes unique: one claim_id sent many times at once
  leases one run (the losers find the lease the winner took).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAS_CLAIM = "lease_claim_id IS NOT NULL"
WAITING = {"sqlite_where": sa.text("available = 1"), "postgresql_where": sa.text("available")}
CLAIM_INDEXES = {
    "ix_runs_claimable": ["priority DESC", "created_at", "id"],
    "ix_runs_claimable_by_handler": ["handler", "priority DESC", "created_at", "id"],
}
# What SQLite's reflection gets wrong when batch mode rebuilds `runs`.
RUNS_AS_DECLARED = [
    sa.Column("available", sa.Boolean(), nullable=False, server_default=sa.text("true"))
]


PHASES = (
    "'CREATED', 'AUTHORIZED', 'EXECUTING', 'GOVERNANCE_CHECK', 'FINALIZING', 'COMPLETED', 'FAILED'"
)
FINALIZE_RUN = "domain = 'orchestrator' AND action = 'finalize_run'"


def _as_of_0003() -> dict[str, sa.Table]:
    """transitions and acks as revision 0003 left them, for batch mode to copy.

    Reflection on SQLite reorders their constraints and wraps defaults; the
    rebuilt table must read exactly as create_all writes it.
    """
    meta = sa.MetaData()
    sa.Table("runs", meta, sa.Column("id", sa.String(36), primary_key=True))
    transitions = sa.Table(
        "transitions",
        meta,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("from_phase", sa.String(20), nullable=False),
        sa.Column("to_phase", sa.String(20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.UniqueConstraint("run_id", "seq", name="uq_transitions_run_seq"),
        sa.CheckConstraint(f"from_phase IN ({PHASES})", name="ck_transitions_from_phase"),
        sa.CheckConstraint(f"to_phase IN ({PHASES})", name="ck_transitions_to_phase"),
    )
    acks = sa.Table(
        "acks",
        meta,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("domain", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("result_id", sa.String(200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Index("ix_acks_run", "run_id", "id"),
        sa.Index(
            "uq_acks_one_finalize_run",
            "run_id",
            unique=True,
            sqlite_where=sa.text(FINALIZE_RUN),
            postgresql_where=sa.text(FINALIZE_RUN),
        ),
    )
    return {"transitions": transitions, "acks": acks}


def _sealed_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("chain_seq", sa.Integer(), nullable=True),
        sa.Column("hash", sa.String(64), nullable=True),
    ]


def _claim_index(unique: bool) -> None:
    op.drop_index("ix_runs_lease_claim", table_name="runs")
    op.create_index(
        "ix_runs_lease_claim",
        "runs",
        ["lease_worker_id", "lease_claim_id"],
        unique=unique,
        sqlite_where=sa.text(HAS_CLAIM),
        postgresql_where=sa.text(HAS_CLAIM),
    )


def _restore_sqlite_claim_indexes() -> None:
    # a batch rebuild of `runs` on SQLite reflects the claim indexes without DESC
    if op.get_bind().dialect.name == "sqlite":
        for name, columns in CLAIM_INDEXES.items():
            op.drop_index(name, table_name="runs")
            op.create_index(name, "runs", [sa.text(c) for c in columns], **WAITING)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.String(100), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("principal", "key", name="pk_idempotency_keys"),
    )
    op.create_index("ix_idempotency_keys_created", "idempotency_keys", ["created_at"])
    # rebuilt on SQLite: the new columns then sit before the table's constraints,
    # as create_all writes them (ADD COLUMN would append them after); PostgreSQL
    # ALTERs in place (a rebuild would drop keys other tables depend on)
    rebuild = "always" if op.get_bind().dialect.name == "sqlite" else "auto"
    with op.batch_alter_table("runs", recreate=rebuild, reflect_args=RUNS_AS_DECLARED) as batch:
        batch.add_column(sa.Column("created_by", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("chain_length", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("chain_head", sa.String(64), nullable=True))
    _restore_sqlite_claim_indexes()
    _claim_index(unique=True)
    for name, table in _as_of_0003().items():
        with op.batch_alter_table(name, recreate=rebuild, copy_from=table) as batch:
            for column in _sealed_columns():
                batch.add_column(column)


def downgrade() -> None:
    for name in ("transitions", "acks"):
        with op.batch_alter_table(name) as batch:
            for column in ("hash", "chain_seq", "actor"):
                batch.drop_column(column)
    _claim_index(unique=False)
    with op.batch_alter_table("runs", reflect_args=RUNS_AS_DECLARED) as batch:
        for column in ("chain_head", "chain_length", "created_by"):
            batch.drop_column(column)
    _restore_sqlite_claim_indexes()
    op.drop_index("ix_idempotency_keys_created", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_table("api_keys")
