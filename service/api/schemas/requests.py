"""Request bodies: each forbids unknown fields and bounds every number and string."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import (
    AwareDatetime,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from service.api.schemas.base import Name, Pair, StrictModel
from service.config import MAX_TIMEOUT_MS
from service.errors import InvalidRequest
from service.kernel.spec import MAX_ACK_BATCH
from service.store.limits import MAX_KEYS_PER_RUN, check_run_keys


class EmptyIn(StrictModel):
    """The body of a move that takes no parameters: absent, or `{}`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})


class ExpectationIn(StrictModel):
    domain: str = Name
    action: str = Name
    deadline_ms: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_TIMEOUT_MS,
        description="Defaults to the run timeout plus the grace period.",
    )


class RetryIn(StrictModel):
    """How a failed execution is retried (DESIGN section 11)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"max_attempts": 3, "backoff_ms": 1000}]},
    )

    max_attempts: StrictInt = Field(
        ge=1, le=100, description="Attempts in all, the first included."
    )
    backoff_ms: StrictInt = Field(
        default=1000, ge=0, le=MAX_TIMEOUT_MS, description="The wait before the second attempt."
    )
    multiplier: float = Field(
        default=2.0, ge=1, le=10, description="Each later wait is the last one times this."
    )
    max_backoff_ms: StrictInt | None = Field(
        default=None, ge=0, le=MAX_TIMEOUT_MS, description="No wait is longer (null: no cap)."
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
    concurrency_keys: list[str] = Field(
        default_factory=list,
        max_length=MAX_KEYS_PER_RUN,
        description="Keys whose limits (PUT /limits/{key}) this run counts against while a "
        "worker leases it, besides its tenant's own key tenant:<tenant_id>. Each is 1-100 "
        "letters, digits and . _ : / -, starting with a letter or digit.",
    )

    @field_validator("concurrency_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        try:
            return list(check_run_keys(value))
        except InvalidRequest as exc:
            raise ValueError(str(exc)) from None

    not_before: AwareDatetime | None = Field(
        default=None, description="No claim takes the run before this time (with a zone)."
    )
    queue_timeout_ms: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_TIMEOUT_MS,
        description="Still CREATED this long after it could start, the run is failed.",
    )
    retry: RetryIn | None = Field(
        default=None,
        description="Retry failed executions with backoff; sets max_attempts "
        "(send one of the two).",
    )
    requires_approval: StrictBool = Field(
        default=False, description="No claim takes the run before POST /runs/{id}/approve."
    )
    approval_timeout_ms: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_TIMEOUT_MS,
        description="Undecided this long, the run fails (default ROK_APPROVAL_TIMEOUT_MS).",
    )

    @model_validator(mode="after")
    def _one_attempt_count(self) -> CreateRunIn:
        if self.retry is not None and "max_attempts" in self.model_fields_set:
            raise ValueError("send max_attempts or retry.max_attempts, not both")
        if self.approval_timeout_ms is not None and not self.requires_approval:
            raise ValueError("approval_timeout_ms needs requires_approval: true")
        return self

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


class ExecutionCompleteIn(StrictModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"success": True}]})

    success: StrictBool
    error: str | None = Field(default=None, max_length=10000)
    result: Any = Field(
        default=None,
        description="What the handler returned (JSON, at most ROK_MAX_RESULT_BYTES); "
        "shown as the run's `result`.",
    )
    governance_check: GovernanceCheckIn | None = Field(
        default=None,
        description="Then the governance check (as POST /runs/{id}/governance-check takes "
        "it, `finalize` included) in the same request, once the run is in GOVERNANCE_CHECK: "
        "a worker whose domains acked the run's end already saves a round trip. A failure "
        "that the run's retry policy makes the next attempt is not checked. The answer is "
        "the run after both moves; the verdict is its `governance`.",
    )


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
        default=None,
        min_length=1,
        max_length=100,
        description="Only runs of these handlers; omit it (or send null) for runs of any "
        "handler. An empty list is refused (422): it would match no run.",
    )
    wait_ms: StrictInt = Field(
        default=0,
        ge=0,
        le=60000,
        description="Long-poll: wait up to this long for a run before answering 204.",
    )


class HeartbeatIn(StrictModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"worker_id": "host-1/pid-42", "lease_token": "9f86d081884c7d659a2feaa0c55ad015"}
            ]
        },
    )

    worker_id: str = Field(min_length=1, max_length=200)
    lease_token: str | None = Field(
        default=None,
        max_length=64,
        description="The token the claim answered; required, here or in the X-Lease-Token "
        "header (409 without it).",
    )
    lease_ms: StrictInt = Field(default=30000, ge=1, le=MAX_TIMEOUT_MS)


class UngovernedOutcomeIn(StrictModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"success": True}]})

    success: StrictBool
    error: str | None = Field(default=None, max_length=10000)


class FinalizeIn(StrictModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"success": True}]})

    success: StrictBool = True
    error: str | None = Field(default=None, max_length=10000)


class FailIn(StrictModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"error": "cancelled by operator"}]}
    )

    error: str = Field(min_length=1, max_length=10000)


class CancelIn(StrictModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "superseded by a newer run"}]}
    )

    reason: str | None = Field(
        default=None, min_length=1, max_length=10000, description="Why; in the run's error."
    )


class DecisionIn(StrictModel):
    """An approval's decision: who decided and why."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"by": "alice", "reason": "reviewed"}]}
    )

    by: str | None = Field(
        default=None, min_length=1, max_length=200, description="Default: the API key's id."
    )
    reason: str | None = Field(default=None, max_length=10000)
