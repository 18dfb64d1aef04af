"""The kernel's preconditions: what the phase table alone cannot know.

The store refuses every move VALID_TRANSITIONS forbids. These rules add what
depends on more than two phases: who may move a leased run, that a run is
finalized as COMPLETED only after a recorded governance check, and what a
terminal move must leave behind (no lease, the finalize_run ack).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

from service.errors import LeaseLost, PhaseTransitionError
from service.model.audit import FINALIZE_RUN
from service.model.phases import RunPhase
from service.store.outbox import EventType, iso_utc
from service.store.records import RunChanges
from service.store.transaction import RunTransaction


def check_lease(tx: RunTransaction, token: str | None) -> None:
    """A leased run moves only with its current, live token (fencing a presumed-dead worker)."""
    run_id, lease = tx.row.id, tx.row.lease
    if lease is None:
        if token is not None:
            raise LeaseLost(run_id, "the run holds no lease; the token is stale")
        return
    if token is None:
        raise LeaseLost(
            run_id, f"the run is leased to worker {lease.worker_id}; send its X-Lease-Token"
        )
    if token != lease.token:
        raise LeaseLost(run_id, "the token is not the run's current lease")
    if lease.expires_at <= tx.now:
        raise LeaseLost(run_id, "the lease expired")


def require_phase(tx: RunTransaction, expected: RunPhase, requested: RunPhase, why: str) -> None:
    """For a step the table cannot judge alone (a denial, a check that moves nothing)."""
    if tx.row.phase is not expected:
        if tx.row.is_terminal:
            why = f"{tx.row.phase} is terminal"
        raise PhaseTransitionError(tx.row.id, tx.row.phase, requested, why)


def require_governance(tx: RunTransaction, requested: RunPhase) -> None:
    """GOVERNANCE_CHECK is mandatory before FINALIZING (DESIGN section 1)."""
    if not tx.row.governance_recorded:
        raise PhaseTransitionError(
            tx.row.id, tx.row.phase, requested, "no governance check was recorded"
        )


def clock_start(tx: RunTransaction) -> RunChanges:
    """The audit clock starts when the run leaves CREATED; nothing when it already runs."""
    if tx.row.clock_started_at is not None:
        return RunChanges()
    finalize_ms = next((e.deadline_ms for e in tx.expectations() if e.pair == FINALIZE_RUN), None)
    deadline = None if finalize_ms is None else tx.now + timedelta(milliseconds=finalize_ms)
    return RunChanges(clock_started_at=tx.now, finalize_deadline=deadline)


def terminate(
    tx: RunTransaction,
    phase: RunPhase,
    reason: str,
    error: str | None,
    details: dict[str, Any],
    changes: RunChanges | None = None,
) -> None:
    """End the run: the terminal move, no lease left, and its finalize_run ack, in `tx`.

    A FAILED end is alerted (run.failed), whoever ended it: in `tx`, so the alert
    and the move commit together.
    """
    ending = replace(changes or RunChanges(), end_lease=True)
    if error is not None:
        ending = replace(ending, error=error)
    moved_from = tx.row.phase
    tx.transition(phase, reason, details, ending)
    if phase is RunPhase.FAILED:
        failed = {"failed_in": moved_from.value, "reason": reason, "error": tx.row.error}
        tx.emit(EventType.RUN_FAILED, failed | _run_facts(tx))
    # The run's own contract decides, not today's RAC_ENABLED: a run declared
    # with finalize_run owes it even if RAC was switched off since.
    if any(e.pair == FINALIZE_RUN for e in tx.expectations()):
        tx.add_ack(*FINALIZE_RUN, result_id=phase.value, error=None)


def _run_facts(tx: RunTransaction) -> dict[str, Any]:
    """What an alert says about any run besides its id, tenant and phase (never its input)."""
    row = tx.row
    return {"handler": row.handler, "attempt": row.attempt, "max_attempts": row.max_attempts}


def fail_stale(tx: RunTransaction, why: str) -> None:
    """The sweeper's verdict in `tx`: an incident, the FAILED end, and the run.stale alert.

    run.stale follows the run.failed every FAILED end sends, and says what
    only the sweeper knows: the phase the run was stuck in and the deadline.
    """
    if tx.row.is_terminal:
        raise PhaseTransitionError(
            tx.row.id, tx.row.phase, RunPhase.FAILED, f"{tx.row.phase} is terminal"
        )
    stuck_in, deadline = tx.row.phase, tx.row.finalize_deadline
    details = open_stale_incident(tx, why)
    terminate(tx, RunPhase.FAILED, why, why, details)
    stale = {
        "stale_in": stuck_in.value,
        "finalize_deadline": None if deadline is None else iso_utc(deadline),
        "reason": why,
        **details,
    }
    tx.emit(EventType.RUN_STALE, stale | _run_facts(tx))


INCIDENT_ACTION = ("incidents", "create_incident")


def open_stale_incident(tx: RunTransaction, why: str) -> dict[str, Any]:
    """The sweeper's incident for an overdue run, unless one was opened: its details.

    No worker is left to report one, and an overdue run is exactly what the
    incidents domain exists to surface.
    """
    if any(a.pair == INCIDENT_ACTION for a in tx.acks()):
        return {}
    incident_id = f"inc-{uuid.uuid4()}"
    tx.add_ack(
        *INCIDENT_ACTION,
        result_id=incident_id,
        error=None,
        details={"kind": "stale", "summary": why, "opened_by": "rok sweeper"},
    )
    return {"incident_id": incident_id}


def walk_ungoverned(tx: RunTransaction, success: bool, error: str | None, governed: bool) -> None:
    """ROK_ENABLED=false: walk the table to COMPLETED (or straight to FAILED) in `tx`.

    The history stays a legal path, but no governance check is recorded: the
    run's reconciliation honestly reports the evidence it never received.
    Governance cannot be skipped by asking: a service that governs
    (`governed`, its own ROK_ENABLED=true) refuses the walk, and no service
    turns an execution recorded as failed into a success.
    """
    row, target = tx.row, RunPhase.COMPLETED if success else RunPhase.FAILED
    if governed:
        raise PhaseTransitionError(
            row.id,
            row.phase,
            target,
            "this service runs with ROK_ENABLED=true and governs every run; an ungoverned "
            "outcome is accepted only by a service started with ROK_ENABLED=false. Drive "
            "the run through authorize, begin-execution, execution-complete, "
            "governance-check and finalize",
        )
    if row.is_terminal:
        raise PhaseTransitionError(row.id, row.phase, target, f"{row.phase} is terminal")
    if success and row.execution_success is False:
        raise PhaseTransitionError(
            row.id,
            row.phase,
            target,
            "its execution was recorded as failed; an ungoverned outcome cannot turn it "
            "into a success (send success=false)",
        )
    reason = "ungoverned (ROK_ENABLED=false)"
    started = clock_start(tx)
    if not success:
        why = error or row.error or "execution failed"
        terminate(tx, RunPhase.FAILED, f"{reason}: {why}", why, {}, started)
        return
    path = [RunPhase.AUTHORIZED, RunPhase.EXECUTING, RunPhase.GOVERNANCE_CHECK, RunPhase.FINALIZING]
    for phase in path[path.index(tx.row.phase) + 1 :] if tx.row.phase in path else path:
        tx.transition(phase, reason, changes=started)
        started = RunChanges()
    terminate(tx, RunPhase.COMPLETED, reason, None, {}, RunChanges(execution_success=True))
