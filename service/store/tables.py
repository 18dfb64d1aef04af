"""The schema: SQLAlchemy Core tables and the indexes of the hot paths.

Alembic migrations in alembic/versions create exactly this; a test compares
the two. Indexes are chosen so a claim, a transition and a sweep touch only
live runs: their cost must not grow with the number of finished runs.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from service.store.columns import AutoId, UTCDateTime, phase_check, sealed_columns

metadata = MetaData()

# Spelled out, not built from bound parameters: SQLite uses a partial index
# only when the query contains its WHERE term as written (see the sweeper).
LIVE_RUN = "phase NOT IN ('COMPLETED', 'FAILED')"
# "has not started" as the audit clock says, not as `phase = 'CREATED'`: with
# the phase in the condition SQLite reads ix_runs_phase_created (every queued
# run) instead; every move out of CREATED starts the clock (kernel.rules.clock_start)
QUEUED_WITH_DEADLINE = "queue_deadline IS NOT NULL AND clock_started_at IS NULL"
APPROVAL_PENDING = "approval_state = 'pending'"
CANCEL_PENDING = LIVE_RUN + " AND cancel_requested_at IS NOT NULL"
FULL_KEY = "in_use >= max_concurrent"

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(200), nullable=True),
    Column("handler", String(200), nullable=True),
    Column("input", JSON, nullable=True),
    Column("phase", String(20), nullable=False),
    Column("attempt", Integer, nullable=False, server_default=text("1")),
    Column("max_attempts", Integer, nullable=False, server_default=text("1")),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("run_timeout_ms", Integer, nullable=False),
    # tenant + key, so one unique index scopes keys per tenant (NULL tenants included)
    Column("idempotency_scope", String(500), nullable=True),
    Column("request_fingerprint", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("execution_success", Boolean, nullable=True),
    # set once a governance check is recorded: null = never checked
    Column("governance_passed", Boolean, nullable=True),
    Column("governance_checked_at", UTCDateTime, nullable=True),
    Column("governance_reconciliation", JSON, nullable=True),
    # the audit clock: starts when the run leaves CREATED
    Column("clock_started_at", UTCDateTime, nullable=True),
    Column("finalize_deadline", UTCDateTime, nullable=True),
    Column("history_length", Integer, nullable=False, server_default=text("0")),
    # waiting for a worker: new runs, and runs released for another attempt
    Column("available", Boolean, nullable=False, server_default=text("true")),
    Column("lease_worker_id", String(200), nullable=True),
    Column("lease_token", String(64), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # the worker's key for the claim that took the lease (migration 0002): the
    # same claim sent again, its answer having been lost, gets the same lease
    Column("lease_claim_id", String(100), nullable=True),
    # trust (migration 0004): who created the run, and the head of its sealed
    # evidence chain (each transition and ack is HMAC-chained to the last)
    Column("created_by", String(64), nullable=True),
    Column("chain_length", Integer, nullable=False, server_default=text("0")),
    Column("chain_head", String(64), nullable=True),
    # concurrency (migration 0006): the keys whose slots a claim of the run takes
    # (null: a run created before them, which lists none)
    Column("concurrency_keys", JSON, nullable=True),
    # the W3C traceparent of the request that created the run (migration 0007):
    # every span of the run, in the service, its worker and its domains, joins that trace
    Column("traceparent", String(55), nullable=True),
    # run control (migration 0008, DESIGN section 11): the earliest a claim may
    # take the run (its scheduled start, or a retry's backoff), how long it may
    # wait unclaimed, its retry schedule, what its handler returned, a pending
    # cancellation, and the human approval it waits for
    Column("not_before", UTCDateTime, nullable=True),
    Column("queue_deadline", UTCDateTime, nullable=True),
    Column("retry_policy", JSON, nullable=True),
    Column("result", JSON, nullable=True),
    Column("cancel_requested_at", UTCDateTime, nullable=True),
    Column("cancel_reason", Text, nullable=True),
    Column("cancel_by", String(200), nullable=True),
    Column("approval_state", String(10), nullable=True),
    Column("approval_by", String(200), nullable=True),
    Column("approval_reason", Text, nullable=True),
    Column("approval_at", UTCDateTime, nullable=True),
    Column("approval_deadline", UTCDateTime, nullable=True),
    phase_check("phase", "runs"),
    Index("ix_runs_idempotency_scope", "idempotency_scope", unique=True),
    Index("ix_runs_created", "created_at", "id"),
    Index("ix_runs_phase_created", "phase", "created_at", "id"),
    Index("ix_runs_tenant_created", "tenant_id", "created_at", "id"),
    Index("ix_runs_handler_created", "handler", "created_at", "id"),
    # the sweeper looks only at live runs with a lease or a deadline
    Index(
        "ix_runs_lease_expiry",
        "lease_expires_at",
        sqlite_where=text("lease_expires_at IS NOT NULL"),
        postgresql_where=text("lease_expires_at IS NOT NULL"),
    ),
    # unique (migration 0004): one claim_id sent many times at once leases one run
    Index(
        "ix_runs_lease_claim",
        "lease_worker_id",
        "lease_claim_id",
        unique=True,
        sqlite_where=text("lease_claim_id IS NOT NULL"),
        postgresql_where=text("lease_claim_id IS NOT NULL"),
    ),
    Index(
        "ix_runs_live_deadline",
        "finalize_deadline",
        sqlite_where=text(LIVE_RUN + " AND finalize_deadline IS NOT NULL"),
        postgresql_where=text(LIVE_RUN + " AND finalize_deadline IS NOT NULL"),
    ),
    # the sweeper's run-control deadlines (migration 0008): each index holds only
    # the runs that can still pass that deadline
    Index(
        "ix_runs_queue_deadline",
        "queue_deadline",
        sqlite_where=text(QUEUED_WITH_DEADLINE),
        postgresql_where=text(QUEUED_WITH_DEADLINE),
    ),
    Index(
        "ix_runs_approval_deadline",
        "approval_deadline",
        sqlite_where=text(APPROVAL_PENDING),
        postgresql_where=text(APPROVAL_PENDING),
    ),
    Index(
        "ix_runs_cancel_requested",
        "cancel_requested_at",
        sqlite_where=text(CANCEL_PENDING),
        postgresql_where=text(CANCEL_PENDING),
    ),
)

# Claims look only at waiting runs, in the claim's own order: priority DESC
# as the query sorts (with an ascending priority SQLite sorted each
# priority's whole queue on every claim; migration 0002). Declared on the
# table's columns, after it, to say DESC; they attach to `runs` themselves.
Index(
    "ix_runs_claimable",
    runs.c.priority.desc(),
    runs.c.created_at,
    runs.c.id,
    # written as each dialect renders `WHERE runs.available`, or SQLite's
    # planner does not see that the query implies the index's condition
    sqlite_where=text("available = 1"),
    postgresql_where=text("available"),
)
Index(
    "ix_runs_claimable_by_handler",
    runs.c.handler,
    runs.c.priority.desc(),
    runs.c.created_at,
    runs.c.id,
    sqlite_where=text("available = 1"),
    postgresql_where=text("available"),
)

# Fair claims (migration 0006): a tenant's waiting runs in claim order, so a
# claim that chose the tenant reads only that tenant's queue.
Index(
    "ix_runs_claimable_by_tenant",
    runs.c.tenant_id,
    runs.c.priority.desc(),
    runs.c.created_at,
    runs.c.id,
    sqlite_where=text("available = 1"),
    postgresql_where=text("available"),
)
Index(
    "ix_runs_claimable_by_tenant_handler",
    runs.c.tenant_id,
    runs.c.handler,
    runs.c.priority.desc(),
    runs.c.created_at,
    runs.c.id,
    sqlite_where=text("available = 1"),
    postgresql_where=text("available"),
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("from_phase", String(20), nullable=False),
    Column("to_phase", String(20), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=True),
    Column("details", JSON, nullable=True),
    *sealed_columns(),
    # two writers racing for the same history slot: exactly one wins
    UniqueConstraint("run_id", "seq", name="uq_transitions_run_seq"),
    phase_check("from_phase", "transitions"),
    phase_check("to_phase", "transitions"),
)

expectations = Table(
    "expectations",
    metadata,
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("domain", String(100), nullable=False),
    Column("action", String(100), nullable=False),
    Column("deadline_ms", Integer, nullable=True),
    Column("position", Integer, nullable=False),
    PrimaryKeyConstraint("run_id", "domain", "action", name="pk_expectations"),
)

acks = Table(
    "acks",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("domain", String(100), nullable=False),
    Column("action", String(100), nullable=False),
    Column("result_id", String(200), nullable=True),
    Column("error", Text, nullable=True),
    Column("at", UTCDateTime, nullable=False),
    Column("late", Boolean, nullable=False, server_default=text("false")),
    # what the domain recorded (an incident, a policy evaluation, a trace summary)
    Column("details", JSON, nullable=True),
    *sealed_columns(),
    Index("ix_acks_run", "run_id", "id"),
    # invariant 2: a run has at most one finalize_run ack, whoever races for it
    Index(
        "uq_acks_one_finalize_run",
        "run_id",
        unique=True,
        sqlite_where=text("domain = 'orchestrator' AND action = 'finalize_run'"),
        postgresql_where=text("domain = 'orchestrator' AND action = 'finalize_run'"),
    ),
)

# API keys (migration 0004): only a hash of the secret is stored; the key
# itself is shown once, by `rok keys create`.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(200), nullable=False),
    Column("name", String(200), nullable=True),
    Column("scopes", JSON, nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

# Idempotency-Key (migration 0004): the first answer to a key, per principal,
# replayed to a retry. A row with no status is a request still in progress.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("principal", String(64), nullable=False),
    Column("key", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("content_type", String(100), nullable=True),
    Column("body", LargeBinary, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("principal", "key", name="pk_idempotency_keys"),
    Index("ix_idempotency_keys_created", "created_at"),
)

# The outbox (migration 0007): an alert written in the transaction that caused
# it (service.store.outbox), delivered after commit as a Standard Webhook.
EVENT_STATES = ("pending", "delivered", "failed")
PENDING_EVENT = "state = 'pending'"

events = Table(
    "events",
    metadata,
    # the webhook-id: the same on every retry, so a receiver can drop duplicates
    Column("id", String(40), primary_key=True),
    Column("type", String(40), nullable=False),
    # no foreign key: an alert outlives the run it is about
    Column("run_id", String(36), nullable=False),
    Column("tenant_id", String(200), nullable=True),
    # the exact JSON body sent on every attempt (the signature covers it)
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", UTCDateTime, nullable=True),
    # digests of the endpoints that accepted it: a retry skips them (never the URLs,
    # which may hold a token)
    Column("delivered_to", JSON, nullable=True),
    CheckConstraint(
        "state IN (" + ", ".join(f"'{s}'" for s in EVENT_STATES) + ")", name="ck_events_state"
    ),
    Index("ix_events_created", "created_at", "id"),
    Index("ix_events_tenant_created", "tenant_id", "created_at", "id"),
    # the deliverer reads only what is still to send
    Index(
        "ix_events_due",
        "next_attempt_at",
        sqlite_where=text(PENDING_EVENT),
        postgresql_where=text(PENDING_EVENT),
    ),
)

# The owed feed's index (migration 0005): one row per domain expectation a live
# run still waits for (PENDING, not orchestrator/finalize_run). Written where
# the run is created, updated as it moves through CREATED … GOVERNANCE_CHECK,
# deleted as the pair's ack lands, the verdict is recorded or the run leaves
# those phases (service.store.owed): so GET /domains/{domain}/owed reads this
# table alone, and a million finished runs add nothing to it.
pending_expectations = Table(
    "pending_expectations",
    metadata,
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("domain", String(100), nullable=False),
    Column("action", String(100), nullable=False),
    # copies of the run's: the feed answers without reading `runs`
    Column("tenant_id", String(200), nullable=True),
    Column("handler", String(200), nullable=True),
    Column("phase", String(20), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("run_id", "domain", "action", name="pk_pending_expectations"),
    # only the phases that still owe evidence: a row left behind by a move shows at once
    CheckConstraint(
        "phase IN ('CREATED', 'AUTHORIZED', 'EXECUTING', 'GOVERNANCE_CHECK')",
        name="ck_pending_expectations_phase",
    ),
    # the feed's order (oldest run first, its actions together), with and without a phase
    Index("ix_pending_expectations_feed", "domain", "created_at", "run_id", "action"),
    Index("ix_pending_expectations_phase", "domain", "phase", "created_at", "run_id", "action"),
)

# Concurrency limits (migration 0006, service.store.limits): one row per key a
# run listed and per tenant (its lane, key `tenant:<id>`). `in_use` counts the
# leased runs holding the key; a claim takes a slot, the end of the lease gives
# it back, in the same transaction.
concurrency_limits = Table(
    "concurrency_limits",
    metadata,
    Column("key", String(250), primary_key=True),
    # None: no limit set (a lane then has ROK_TENANT_CONCURRENCY, else none)
    Column("max_concurrent", Integer, nullable=True),
    Column("in_use", Integer, nullable=False, server_default=text("0")),
    # lanes only: may hold waiting runs (set by whatever queues one, cleared by
    # a claim that found none), and the claim count when it was last served
    Column("waiting", Boolean, nullable=False, server_default=text("false")),
    Column("served_seq", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_at", UTCDateTime, nullable=True),
    CheckConstraint("in_use >= 0", name="ck_concurrency_limits_in_use"),
    CheckConstraint(
        "max_concurrent IS NULL OR max_concurrent >= 0", name="ck_concurrency_limits_max"
    ),
    # the claim's turn order: lanes with waiting runs, served longest ago first
    Index(
        "ix_concurrency_limits_turn",
        "served_seq",
        "key",
        sqlite_where=text("waiting = 1"),
        postgresql_where=text("waiting"),
    ),
    # the keys with no free slot, read once per claim
    Index(
        "ix_concurrency_limits_full",
        "key",
        sqlite_where=text(FULL_KEY),
        postgresql_where=text(FULL_KEY),
    ),
)

# A run's keys, one row each: what lets a claim pass over runs holding a full key.
run_concurrency_keys = Table(
    "run_concurrency_keys",
    metadata,
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    PrimaryKeyConstraint("run_id", "key", name="pk_run_concurrency_keys"),
)
