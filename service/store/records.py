"""What is stored for one run, as plain values: the read model the API serialises."""

from __future__ import annotations

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


@dataclass(frozen=True)
class HistoryEntry:
    transition: PhaseTransition
    attempt: int


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
