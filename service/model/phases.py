"""The run phase machine: the one table of legal moves and the history it leaves.

Pure Python, no storage: the kernel rebuilds a `PhaseStateMachine` from the
persisted history, asks it whether a move is legal, and persists what it
returns in the same transaction as the guarded UPDATE.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.errors import PhaseTransitionError


class RunPhase(enum.StrEnum):
    """Where a run is in its lifecycle."""

    CREATED = "CREATED"
    """Accepted and its audit contract declared; waiting to be authorized."""
    AUTHORIZED = "AUTHORIZED"
    """An authorizer granted it; execution may begin."""
    EXECUTING = "EXECUTING"
    """The handler is running."""
    GOVERNANCE_CHECK = "GOVERNANCE_CHECK"
    """Execution ended; acks are reconciled against the contract."""
    FINALIZING = "FINALIZING"
    """Governance was checked; the run is being closed."""
    COMPLETED = "COMPLETED"
    """Terminal: finished and finalized."""
    FAILED = "FAILED"
    """Terminal: denied, failed, timed out, abandoned or failed governance."""


TERMINAL_PHASES: frozenset[RunPhase] = frozenset({RunPhase.COMPLETED, RunPhase.FAILED})

VALID_TRANSITIONS: dict[RunPhase, frozenset[RunPhase]] = {
    RunPhase.CREATED: frozenset({RunPhase.AUTHORIZED, RunPhase.FAILED}),
    RunPhase.AUTHORIZED: frozenset({RunPhase.EXECUTING, RunPhase.FAILED}),
    RunPhase.EXECUTING: frozenset({RunPhase.GOVERNANCE_CHECK, RunPhase.FAILED}),
    RunPhase.GOVERNANCE_CHECK: frozenset({RunPhase.FINALIZING, RunPhase.FAILED}),
    RunPhase.FINALIZING: frozenset({RunPhase.COMPLETED, RunPhase.FAILED}),
    RunPhase.COMPLETED: frozenset(),
    RunPhase.FAILED: frozenset(),
}


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (naive datetimes never enter rok)."""
    return datetime.now(UTC)


def is_valid_transition(current: RunPhase, requested: RunPhase) -> bool:
    return requested in VALID_TRANSITIONS[current]


@dataclass(frozen=True)
class PhaseTransition:
    """One entry of a run's history."""

    from_phase: RunPhase
    to_phase: RunPhase
    at: datetime
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PhaseContext:
    """Governance status and execution outcome of one run."""

    phase: RunPhase = RunPhase.CREATED
    incident_created: bool = False
    policy_evaluated: bool = False
    trace_completed: bool = False
    all_acks_received: bool = False
    governance_checked: bool = False
    execution_success: bool | None = None
    execution_error: str | None = None

    def is_terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES


class PhaseStateMachine:
    """The current phase of one run and the path that led there.

    Creation is not a transition: a new machine is in CREATED with an empty
    history, and its first entry leaves CREATED.
    """

    def __init__(
        self,
        run_id: str,
        phase: RunPhase = RunPhase.CREATED,
        history: list[PhaseTransition] | None = None,
    ) -> None:
        self.run_id = run_id
        self.phase = phase
        self.history: list[PhaseTransition] = list(history or [])

    @property
    def is_terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    def can_transition(self, requested: RunPhase) -> bool:
        return is_valid_transition(self.phase, requested)

    def check(self, requested: RunPhase, why: str = "") -> None:
        """Raise PhaseTransitionError unless `requested` is legal from here."""
        if not self.can_transition(requested):
            if self.is_terminal and not why:
                why = f"{self.phase} is terminal"
            raise PhaseTransitionError(self.run_id, self.phase, requested, why)

    def transition(
        self,
        requested: RunPhase,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> PhaseTransition:
        """Move to `requested`, append and return the history entry."""
        self.check(requested)
        entry = PhaseTransition(
            from_phase=self.phase,
            to_phase=requested,
            at=at or utc_now(),
            reason=reason,
            details=dict(details or {}),
        )
        self.history.append(entry)
        self.phase = requested
        return entry
