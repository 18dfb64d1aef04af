"""One-letter names of the phases, so a test reads like the transition table.

C -> A -> E -> G -> Z -> OK, and X (FAILED) from any of the first five.
"""

from __future__ import annotations

from service.model.phases import RunPhase
from service.store.records import RunRecord

C = RunPhase.CREATED
A = RunPhase.AUTHORIZED
E = RunPhase.EXECUTING
G = RunPhase.GOVERNANCE_CHECK
Z = RunPhase.FINALIZING
OK = RunPhase.COMPLETED
X = RunPhase.FAILED

NON_TERMINAL = [C, A, E, G, Z]


def moves(record: RunRecord) -> list[tuple[RunPhase, RunPhase]]:
    """The (from, to) pairs of a stored run's history, in order."""
    return [(h.transition.from_phase, h.transition.to_phase) for h in record.history]
