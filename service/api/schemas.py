"""Request and response models: these classes are the OpenAPI contract.

Requests forbid unknown fields (a typo must not be silently ignored by a
governance service) and bound every number and string.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from service.config import MAX_TIMEOUT_MS
from service.kernel.kernel import MAX_ACK_BATCH
from service.model.audit import ExpectationStatus, ReconciliationStatus
from service.model.phases import RunPhase

Name = Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$")
Pair = tuple[str, str]


class StrictModel(BaseModel):
    """A request body: unknown fields, coerced types and unstorable text are refused."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        # Every value must come back exactly as sent, on both databases:
        # see check_storable for what cannot.
        check_storable(data, "body")
        return data


class EmptyIn(StrictModel):
    """The body of a move that takes no parameters: absent, or `{}`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})


MAX_JSON_DEPTH = 32
_INT64 = 2**63


def check_storable(value: Any, where: str, depth: int = 0) -> None:
    """Refuse JSON values that a database would alter, reject or choke on.

    NaN/Infinity are not JSON (SQLite would store null, PostgreSQL refuses
    them), integers past 64 bits come back as floats, NUL characters are
    refused by PostgreSQL text, lone surrogates cannot be encoded, and very
    deep nesting overflows the encoders. Each would either change a stored run
    or fail after it was committed.
    """
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"{where} holds {value}, which is not a JSON number")
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise ValueError(f"{where} holds an integer outside the signed 64-bit range")
    elif isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(str(key), f"{where} key")
            check_storable(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_storable(item, f"{where}[{index}]", depth + 1)


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise ValueError(f"{where} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where} contains an unpaired surrogate") from None


# -- requests -----------------------------------------------------------------


class ExpectationIn(StrictModel):
    domain: str = Name
    action: str = Name
    deadline_ms: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_TIMEOUT_MS,
        description="Defaults to the run timeout plus the grace period.",
    )


class CreateRunIn(StrictModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "handler": "summarize",
                    "input": {"doc": "q3.pdf"},
                    "run_timeout_ms": 60000,
                    "idempotency_key": "summarize-q3",
                }
            ]
        },
    )

    run_id: UUID | None = Field(default=None, description="Chosen by the client; else generated.")
    tenant_id: str | None = Field(default=None, min_length=1, max_length=200)
    handler: str | None = Field(default=None, min_length=1, max_length=200)
    input: Any = None
    run_timeout_ms: StrictInt | None = Field(default=None, ge=1, le=MAX_TIMEOUT_MS)
    expectations: list[ExpectationIn] | None = Field(
        default=None,
        max_length=100,
        description="Replaces the four default domain expectations; "
        "orchestrator/finalize_run is always added.",
    )
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    max_attempts: StrictInt = Field(default=1, ge=1, le=100)
    priority: StrictInt = Field(
        default=0, ge=-1000, le=1000, description="Higher is claimed first."
    )

    @field_validator("expectations")
    @classmethod
    def _distinct_and_ackable(cls, value: list[ExpectationIn] | None) -> list[ExpectationIn] | None:
        if value is None:
            return value
        seen: set[Pair] = set()
        for exp in value:
            pair = (exp.domain, exp.action)
            if pair in seen:
                raise ValueError(f"expectation {exp.domain}/{exp.action} is listed twice")
            if exp.domain == "orchestrator" and exp.action != "finalize_run":
                raise ValueError(
                    f"orchestrator/{exp.action} can never be acked: the orchestrator "
                    "domain is the kernel's own and only owes finalize_run"
                )
            seen.add(pair)
        return value


class AuthorizeIn(StrictModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"decision": "GRANTED"}]}
    )

    decision: str = Field(
        min_length=1,
        max_length=100,
        description="GRANTED authorizes; any other value fails the run.",
    )
    reason: str | None = Field(default=None, max_length=2000)
    begin_execution: StrictBool = Field(
        default=False,
        description="When GRANTED, also move the run on to EXECUTING in the same transaction "
        "(the history records both moves): a worker that starts at once saves a round trip.",
    )


class ExecutionCompleteIn(StrictModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"success": True}]})

    success: StrictBool
    error: str | None = Field(default=None, max_length=10000)


class AckIn(StrictModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"domain": "incidents", "action": "create_incident", "result_id": None}]
        },
    )

    domain: str = Name
    action: str = Name
    result_id: str | None = Field(default=None, max_length=200)
    error: str | None = Field(default=None, max_length=10000)
    details: dict[str, Any] | None = Field(
        default=None,
        description="What the domain recorded (an incident, a policy evaluation, a trace).",
    )


class AckBatchIn(StrictModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "acks": [
                        {"domain": "policies", "action": "evaluate_policy", "result_id": "ev-7"},
                        {"domain": "traces", "action": "complete_trace", "result_id": "tr-7"},
                    ]
                }
            ]
        },
    )

    acks: list[AckIn] = Field(min_length=1, max_length=MAX_ACK_BATCH)


class ClaimIn(StrictModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "worker_id": "host-1/pid-42",
                    "lease_ms": 30000,
                    "wait_ms": 5000,
                    "claim_id": "5b0e3c1d9f2a4e7b8c6d1a2b3c4d5e6f",
                }
            ]
        },
    )

    worker_id: str = Field(min_length=1, max_length=200)
    claim_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description=(
            "The worker's key for this claim (a fresh one per claim, the same one when "
            "retrying it): a claim sent again after its answer was lost gets the lease "
            "it already took, not a second run."
        ),
    )
    lease_ms: StrictInt = Field(default=30000, ge=1, le=MAX_TIMEOUT_MS)
    handlers: list[str] | None = Field(
        default=None, max_length=100, description="Only runs of these handlers."
    )
    wait_ms: StrictInt = Field(
        default=0,
        ge=0,
        le=60000,
        description="Long-poll: wait up to this long for a run before answering 204.",
    )


class HeartbeatIn(StrictModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"worker_id": "host-1/pid-42"}]}
    )

    worker_id: str = Field(min_length=1, max_length=200)
    lease_token: str | None = Field(
        default=None, max_length=64, description="Or send it in the X-Lease-Token header."
    )
    lease_ms: StrictInt = Field(default=30000, ge=1, le=MAX_TIMEOUT_MS)


class UngovernedOutcomeIn(StrictModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"success": True}]})

    success: StrictBool
    error: str | None = Field(default=None, max_length=10000)


class GovernanceCheckIn(StrictModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"timeout_ms": 2000, "require_all_acks": True}]},
    )

    timeout_ms: StrictInt | None = Field(default=None, ge=1, le=MAX_TIMEOUT_MS)
    require_all_acks: StrictBool = False
    finalize: StrictBool = Field(
        default=False,
        description="After recording the check, finalize the run in the same transaction with "
        "the outcome execution-complete recorded: COMPLETED when the execution succeeded, "
        "FAILED with its error otherwise (a strict check that did not pass has failed it "
        "already). Saves the worker the finalize round trip.",
    )


class FinalizeIn(StrictModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"success": True}]})

    success: StrictBool = True
    error: str | None = Field(default=None, max_length=10000)


class FailIn(StrictModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"error": "cancelled by operator"}]}
    )

    error: str = Field(min_length=1, max_length=10000)


# -- responses ----------------------------------------------------------------


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
    late: bool = Field(description="Arrived after the run was terminal: kept as drift.")
    details: dict[str, Any] | None = None


class AckBatchOut(BaseModel):
    acks: list[AckOut] = Field(description="As recorded, in the order sent.")


class ReconciliationOut(BaseModel):
    status: ReconciliationStatus
    missing: list[Pair]
    drift: list[Pair]
    invalid: list[Pair]
    failed: list[Pair]
    stale: bool


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
    run_timeout_ms: int
    created_at: datetime
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


class RunPageOut(BaseModel):
    items: list[RunOut]
    next_cursor: str | None


class GovernanceCheckOut(BaseModel):
    passed: bool
    reconciliation: ReconciliationOut
    run: RunOut


class ErrorOut(BaseModel):
    detail: str
    current_phase: RunPhase | None = None
    requested_phase: RunPhase | None = None


class HealthOut(BaseModel):
    status: str
    database: str
