"""Response models: the shapes the presenters build, as the OpenAPI contract states them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas.base import Pair
from service.model.audit import ExpectationStatus, ReconciliationStatus
from service.model.phases import RunPhase


class HistoryEntryOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: RunPhase = Field(alias="from")
    to: RunPhase
    at: datetime
    reason: str | None
    attempt: int
    kind: Literal["transition", "attempt"] = Field(
        description="`attempt`: a new attempt began in the same phase (from == to)."
    )
    details: dict[str, Any]
    actor: str | None = Field(
        default=None,
        description="The id of the API key that made this record; null with auth off, "
        "or when the service itself made it (the sweeper).",
    )


class ExpectationOut(BaseModel):
    domain: str
    action: str
    deadline_ms: int | None
    deadline: datetime | None
    status: ExpectationStatus


class AckOut(BaseModel):
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


class AckBatchOut(BaseModel):
    acks: list[AckOut] = Field(description="As recorded, in the order sent.")


class ReconciliationOut(BaseModel):
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


class GovernanceOut(BaseModel):
    passed: bool
    checked_at: datetime
    reconciliation: ReconciliationOut


class LeaseOut(BaseModel):
    worker_id: str
    expires_at: datetime


class LeaseGrantOut(LeaseOut):
    token: str = Field(description="Send it as X-Lease-Token on every move of this run.")


class RunOut(BaseModel):
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


class ClaimOut(BaseModel):
    run: RunOut
    lease: LeaseGrantOut


class RunSummaryOut(BaseModel):
    """A run in a list: what it is and where it stands; GET /runs/{id} has the whole run."""

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


class RunPageOut(BaseModel):
    items: list[RunSummaryOut]
    next_cursor: str | None


class GovernanceCheckOut(BaseModel):
    passed: bool
    reconciliation: ReconciliationOut
    run: RunOut


class ErrorOut(BaseModel):
    detail: str
    current_phase: RunPhase | None = None
    requested_phase: RunPhase | None = None
    code: str | None = Field(
        default=None,
        description="Set by the gates in front of the routes, naming the refusal: "
        "`too_large`, `rate_limited`, `idempotency_in_progress`.",
    )


class FieldErrorOut(BaseModel):
    loc: list[str | int] = Field(
        description="Where: `body`, `path`, `query` or `header`, then the field's path."
    )
    msg: str
    type: str


class InvalidOut(BaseModel):
    """422, in one of two shapes: the request did not validate (a list naming each
    field), or the service refused what it asked for (one sentence)."""

    detail: list[FieldErrorOut] | str = Field(
        description="A list naming each field that failed validation (or the body that "
        "could not be read as JSON), or one sentence when the request validated but "
        "cannot be done (a value no database keeps as sent, a limit such as "
        "ROK_MAX_ACKS_PER_RUN, a reused or malformed Idempotency-Key)."
    )
    code: str | None = Field(
        default=None,
        description="Set by the gates in front of the routes, naming the refusal: "
        "`invalid_request`, `idempotency_key_reused`.",
    )


class HealthOut(BaseModel):
    status: str
    database: str
    rok_enabled: bool = Field(
        description="ROK_ENABLED of this service: true, it governs every run (workers with "
        "ROK_ENABLED=false refuse to start against it); false, it accepts ungoverned outcomes."
    )
