"""Response models: the shapes the presenters build, as the OpenAPI contract states them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from service.api.schemas.examples import (
    ACK_EXAMPLE,
    CLAIM_EXAMPLE,
    LEASE_GRANT_EXAMPLE,
    RECONCILIATION_EXAMPLE,
    RUN_EXAMPLE,
    STATE_EXAMPLE,
    SUMMARY_EXAMPLE,
)
from service.model.audit import ExpectationStatus, ReconciliationStatus
from service.model.phases import RunPhase

Pair = Annotated[
    tuple[str, str],
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 2,
            "maxItems": 2,
            "description": "`[domain, action]`",
        }
    ),
]
"""A `[domain, action]` pair: declared as an array of two strings, not a `prefixItems`
tuple, which several client generators mistype (the JSON is the same)."""


class Answer(BaseModel):
    """A response body. Every field is always sent, so every field is required in the
    contract, defaults or not: a generated client never has to guess whether it is set."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class HistoryEntryOut(Answer):
    model_config = ConfigDict(populate_by_name=True)

    from_: RunPhase = Field(alias="from")
    to: RunPhase
    at: datetime
    reason: str | None
    attempt: int
    kind: Literal["transition", "attempt", "event"] = Field(
        description="`attempt`: a new attempt began in the same phase (from == to); "
        "`event`: a control event that moves nothing (`details.event`: cancel_requested, "
        "approval_requested, approved)."
    )
    details: dict[str, Any]
    actor: str | None = Field(
        default=None,
        description="The id of the API key that made this record; null with auth off, "
        "or when the service itself made it (the sweeper).",
    )


class ExpectationOut(Answer):
    domain: str
    action: str
    deadline_ms: int | None
    deadline: datetime | None
    status: ExpectationStatus


class AckOut(Answer):
    model_config = ConfigDict(json_schema_extra={"examples": [ACK_EXAMPLE]})

    domain: str
    action: str
    result_id: str | None
    error: str | None
    at: datetime
    late: bool = Field(
        description="Arrived after the governance verdict was recorded or the run ended: "
        "kept, listed as drift in the live reconciliation, never counted as evidence "
        "(the recorded verdict never changes)."
    )
    details: dict[str, Any] | None = None
    actor: str | None = Field(
        default=None,
        description="The id of the API key that made this record; null with auth off, "
        "or when the service itself made it (the sweeper).",
    )


class AckBatchOut(Answer):
    model_config = ConfigDict(json_schema_extra={"examples": [{"acks": [ACK_EXAMPLE]}]})

    acks: list[AckOut] = Field(description="As recorded, in the order sent.")


class ReconciliationOut(Answer):
    model_config = ConfigDict(json_schema_extra={"examples": [RECONCILIATION_EXAMPLE]})

    status: ReconciliationStatus = Field(
        description="STALE, else INCOMPLETE when anything is missing, drifted, invalid or "
        "failed, else PENDING while a domain expectation is pending, else COMPLETE."
    )
    missing: list[Pair]
    drift: list[Pair]
    invalid: list[Pair]
    failed: list[Pair]
    stale: bool
    pending: list[Pair] = Field(
        description="Expected, not acked, and neither missing nor past its deadline "
        "(the run has not been checked yet; finalize_run until the run ends)."
    )


class GovernanceOut(Answer):
    passed: bool
    checked_at: datetime
    reconciliation: ReconciliationOut


class LeaseOut(Answer):
    worker_id: str
    expires_at: datetime


class LeaseGrantOut(LeaseOut):
    model_config = ConfigDict(json_schema_extra={"examples": [LEASE_GRANT_EXAMPLE]})

    token: str = Field(description="Send it as X-Lease-Token on every move of this run.")
    cancel_requested: bool = Field(
        default=False,
        description="In a heartbeat's answer: stop the handler and report the run as failed.",
    )
    cancel_reason: str | None = Field(default=None, description="Why it was cancelled.")


class ApprovalOut(BaseModel):
    state: Literal["pending", "approved", "rejected", "expired"]
    by: str | None = Field(description="Who decided (the approver's name, else the key id).")
    reason: str | None
    at: datetime | None = Field(description="When it was decided.")
    deadline: datetime | None = Field(description="Undecided past it, the sweeper fails the run.")


class CancellationOut(BaseModel):
    requested_at: datetime
    by: str | None
    reason: str | None


class RetryOut(BaseModel):
    backoff_ms: int
    multiplier: float
    max_backoff_ms: int | None


class RunOut(Answer):
    model_config = ConfigDict(json_schema_extra={"examples": [RUN_EXAMPLE]})

    id: UUID
    tenant_id: str | None
    handler: str | None
    input: Any
    phase: RunPhase
    attempt: int
    max_attempts: int
    priority: int
    concurrency_keys: list[str] = Field(
        default_factory=list, description="The keys whose limits the run counts against."
    )
    run_timeout_ms: int
    created_at: datetime
    created_by: str | None = Field(
        default=None, description="The id of the API key that created the run (null: auth off)."
    )
    traceparent: str | None = Field(
        default=None,
        description="The W3C traceparent of the request that created the run: send it on "
        "every request about the run (a worker does) and its spans share one trace.",
        examples=["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
    )
    updated_at: datetime
    execution_success: bool | None
    error: str | None
    lease: LeaseOut | None
    governance: GovernanceOut | None = Field(description="The last recorded governance check.")
    history: list[HistoryEntryOut]
    expectations: list[ExpectationOut]
    acks: list[AckOut]
    incidents: list[dict[str, Any]] = Field(
        description="Incidents the incidents domain opened for this run."
    )
    reconciliation: ReconciliationOut = Field(description="The reconciliation as of now.")
    result: Any = Field(default=None, description="What the handler returned (JSON), if kept.")
    not_before: datetime | None = Field(
        default=None,
        description="No claim takes the run earlier: its scheduled start, or a retry's backoff.",
    )
    queue_deadline: datetime | None = Field(
        default=None, description="Still CREATED past it, the sweeper fails the run."
    )
    retry: RetryOut | None = Field(default=None, description="How failed executions are retried.")
    cancel_requested: bool = Field(
        default=False, description="A cancellation waits for the executing worker to stop."
    )
    cancellation: CancellationOut | None = Field(default=None)
    approval: ApprovalOut | None = Field(
        default=None, description="The human approval the run needs (null: none)."
    )


class RunStateOut(Answer):
    """A run's state after a move, without its records (history, contract, acks): what a
    move answers when the request sent `Prefer: return=minimal` (RFC 7240). Workers need
    the phase, the lease and the verdict; GET /runs/{id} has the whole run."""

    model_config = ConfigDict(json_schema_extra={"examples": [STATE_EXAMPLE]})

    id: UUID
    tenant_id: str | None
    handler: str | None
    phase: RunPhase
    attempt: int
    max_attempts: int
    updated_at: datetime
    execution_success: bool | None
    error: str | None
    lease: LeaseOut | None
    governance: GovernanceOut | None = Field(description="The last recorded governance check.")
    cancel_requested: bool = Field(
        default=False, description="A cancellation waits for the executing worker to stop."
    )


RunAnswer = RunOut | RunStateOut
"""What a move answers: the whole run, or its state alone with `Prefer: return=minimal`."""


class ClaimOut(Answer):
    model_config = ConfigDict(json_schema_extra={"examples": [CLAIM_EXAMPLE]})

    run: RunOut
    lease: LeaseGrantOut


class RunSummaryOut(Answer):
    """A run in a list: what it is and where it stands; GET /runs/{id} has the whole run."""

    model_config = ConfigDict(json_schema_extra={"examples": [SUMMARY_EXAMPLE]})

    id: UUID
    tenant_id: str | None
    handler: str | None
    phase: RunPhase
    attempt: int
    created_at: datetime
    updated_at: datetime
    error: str | None
    reconciliation_status: ReconciliationStatus = Field(
        description="The status of the run's reconciliation as of now."
    )


class RunPageOut(Answer):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [SUMMARY_EXAMPLE], "next_cursor": None}]}
    )

    items: list[RunSummaryOut]
    next_cursor: str | None


class GovernanceCheckOut(Answer):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"passed": True, "reconciliation": RECONCILIATION_EXAMPLE, "run": RUN_EXAMPLE}
            ]
        }
    )

    passed: bool
    reconciliation: ReconciliationOut
    run: RunOut | RunStateOut


class HealthOut(Answer):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ok", "database": "sqlite", "rok_enabled": True}]
        }
    )

    status: str
    database: str
    rok_enabled: bool = Field(
        description="ROK_ENABLED of this service: true, it governs every run (workers with "
        "ROK_ENABLED=false refuse to start against it); false, it accepts ungoverned outcomes."
    )
