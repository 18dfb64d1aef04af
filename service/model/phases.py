"""The run phase machine: the one table of legal moves and the history it leaves.

Pure Python, no storage. The store checks every move it writes against
`VALID_TRANSITIONS` (`check_transition`), in the transaction of the guarded
UPDATE; the kernel adds only the preconditions the table cannot know (the
lease, a recorded governance check, the authorization decision).
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


def check_transition(run_id: str, current: RunPhase, requested: RunPhase) -> None:
    """Raise PhaseTransitionError unless VALID_TRANSITIONS allows `current` -> `requested`.

    The store calls this on every move it writes, so the table is enforced
    where moves are persisted, whoever asks for them.
    """
    if requested not in VALID_TRANSITIONS[current]:
        why = f"{current} is terminal" if current in TERMINAL_PHASES else ""
        raise PhaseTransitionError(run_id, current, requested, why)


@dataclass(frozen=True)
class PhaseTransition:
    """One entry of a run's history."""

    from_phase: RunPhase
    to_phase: RunPhase
    at: datetime
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
