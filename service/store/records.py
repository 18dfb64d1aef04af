"""What is stored for one run, as plain values: the read model the API serialises."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.model.audit import (
    AuditExpectation,
    DomainAck,
    ReconciliationResult,
    reconcile,
)
from service.model.phases import TERMINAL_PHASES, PhaseTransition, RunPhase


@dataclass(frozen=True)
class Lease:
    worker_id: str
    token: str
    expires_at: datetime
    cancel_reason: str | None = field(default=None, compare=False)
    """Set in a heartbeat's answer when a cancellation waits for the worker to stop."""


@dataclass(frozen=True)
class HistoryEntry:
    transition: PhaseTransition
    attempt: int
    actor: str | None = None
    """Who made the move: the API key's id (None with auth off, or the service itself)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed execution is retried: attempt n waits backoff_ms * multiplier^(n-1)."""

    backoff_ms: int = 1000
    multiplier: float = 2.0
    max_backoff_ms: int | None = None

    def delay_ms(self, failed_attempt: int) -> float:
        """The backoff after attempt `failed_attempt` failed (1-based), before jitter."""
        delay = self.backoff_ms * self.multiplier ** (failed_attempt - 1)
        return delay if self.max_backoff_ms is None else min(delay, self.max_backoff_ms)

    def as_json(self) -> dict[str, Any]:
        return {
            "backoff_ms": self.backoff_ms,
            "multiplier": self.multiplier,
            "max_backoff_ms": self.max_backoff_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RetryPolicy | None:
        if data is None:
            return None
        return cls(int(data["backoff_ms"]), float(data["multiplier"]), data.get("max_backoff_ms"))


APPROVAL_STATES = ("pending", "approved", "rejected", "expired")


@dataclass(frozen=True)
class RunControl:
    """The run-control columns of a run (migration 0008), all optional."""

    not_before: datetime | None = None
    """The earliest a claim may take the run: its scheduled start, or a retry's backoff."""
    queue_deadline: datetime | None = None
    """Past it, a run still in CREATED is failed by the sweeper (queue_timeout_ms)."""
    retry: RetryPolicy | None = None
    result: Any = None
    """What the handler returned (JSON), as execution-complete reported it."""
    cancel_requested_at: datetime | None = None
    cancel_reason: str | None = None
    cancel_by: str | None = None
    approval_state: str | None = None
    """None: no approval needed; else one of APPROVAL_STATES."""
    approval_by: str | None = None
    approval_reason: str | None = None
    approval_at: datetime | None = None
    approval_deadline: datetime | None = None

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_requested_at is not None

    def columns(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in CONTROL_COLUMNS if name != "retry_policy"}
        values["retry_policy"] = None if self.retry is None else self.retry.as_json()
        return values

    @classmethod
    def from_columns(cls, m: Any) -> RunControl:
        if all(m[name] is None for name in CONTROL_COLUMNS):
            return NO_CONTROL
        values = {name: m[name] for name in CONTROL_COLUMNS if name != "retry_policy"}
        return cls(retry=RetryPolicy.from_json(m["retry_policy"]), **values)


CONTROL_COLUMNS = (
    "not_before",
    "queue_deadline",
    "retry_policy",
    "result",
    "cancel_requested_at",
    "cancel_reason",
    "cancel_by",
    "approval_state",
    "approval_by",
    "approval_reason",
    "approval_at",
    "approval_deadline",
)
NO_CONTROL = RunControl()


@dataclass
class RunRow:
    """The `runs` row of one run (no history, expectations or acks)."""

    id: str
    tenant_id: str | None
    handler: str | None
    input: Any
    phase: RunPhase
    attempt: int
    max_attempts: int
    priority: int
    run_timeout_ms: int
    error: str | None
    execution_success: bool | None
    governance_passed: bool | None
    governance_checked_at: datetime | None
    governance_reconciliation: dict[str, Any] | None
    clock_started_at: datetime | None
    finalize_deadline: datetime | None
    history_length: int
    lease: Lease | None
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None
    """The actor (API key id) that created the run."""
    control: RunControl = field(default_factory=lambda: NO_CONTROL)
    """Schedule, retries, result, cancellation and approval (DESIGN section 11)."""
    traceparent: str | None = None
    """The W3C traceparent of the request that created the run: every span of the run joins it."""
    # the seal's bookkeeping, not the run's state: a late ack advances the chain
    # and changes nothing about the run, so rows compare without them
    chain_length: int = field(default=0, compare=False)
    """Entries (transitions and acks) sealed so far (service.store.chain)."""
    chain_head: str | None = field(default=None, compare=False)
    """The last entry's seal; the genesis seal while there is none (None: never sealed)."""
    concurrency_keys: list[str] | None = None
    """Keys whose slots the run's lease holds (service.store.limits), its tenant's besides;
    None for a run created before they existed (it lists none)."""

    @property
    def is_terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def governance_recorded(self) -> bool:
        return self.governance_passed is not None


@dataclass
class RunRecord:
    """A run with everything recorded about it."""

    row: RunRow
    history: list[HistoryEntry] = field(default_factory=list)
    expectations: list[AuditExpectation] = field(default_factory=list)
    acks: list[DomainAck] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def phase(self) -> RunPhase:
        return self.row.phase

    def reconciliation(self, now: datetime) -> ReconciliationResult:
        """The reconciliation as of `now`, from the stored contract and acks."""
        return reconcile(
            self.expectations,
            self.acks,
            now,
            check_ended=self.row.governance_recorded,
            terminal=self.row.is_terminal,
        )


@dataclass(frozen=True)
class NewRun:
    """A run as `RunStore.create` writes it, with its contract (domain, action, deadline_ms)."""

    id: str
    tenant_id: str | None
    handler: str | None
    input: Any
    run_timeout_ms: int
    max_attempts: int
    priority: int
    contract: Sequence[tuple[str, str, int | None]]
    idempotency_scope: str | None
    request_fingerprint: str | None
    created_at: datetime
    created_by: str | None = None
    """The actor (API key id) that created the run."""
    control: RunControl = field(default_factory=lambda: NO_CONTROL)
    """Its schedule, queue timeout, retry policy and whether it waits for approval."""
    traceparent: str | None = None
    """The W3C traceparent of the request that created the run (its trace)."""
    concurrency_keys: tuple[str, ...] = ()
    """Keys limiting how many such runs hold a lease at once (service.store.limits)."""


@dataclass(frozen=True)
class RunFilter:
    phase: RunPhase | None = None
    tenant_id: str | None = None
    handler: str | None = None


@dataclass(frozen=True)
class RunChanges:
    """Columns a move sets besides its phase and history; None leaves a column as it is.

    None never needs writing back: an error, an outcome or a started clock is
    never erased; ending the lease is its own flag.
    """

    error: str | None = None
    execution_success: bool | None = None
    clock_started_at: datetime | None = None
    finalize_deadline: datetime | None = None
    end_lease: bool = False
    """Drop the lease and take the run off the claim queue (a terminal move)."""
    control: dict[str, Any] | None = None
    """Run-control columns to set (CONTROL_COLUMNS names): a result, a cancellation."""

    def values(self) -> dict[str, Any]:
        """The columns to write (only those this change sets)."""
        out: dict[str, Any] = {
            name: value
            for name, value in (
                ("error", self.error),
                ("execution_success", self.execution_success),
                ("clock_started_at", self.clock_started_at),
                ("finalize_deadline", self.finalize_deadline),
            )
            if value is not None
        }
        if self.end_lease:
            out.update(available=False, **NO_LEASE)
        if self.control:
            out.update(self.control)
        return out


NO_CHANGES = RunChanges()
NO_LEASE: dict[str, Any] = {
    "lease_worker_id": None,
    "lease_token": None,
    "lease_expires_at": None,
    "lease_claim_id": None,
}
