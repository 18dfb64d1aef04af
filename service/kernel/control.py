"""Run control (DESIGN section 11): cancel, approve or reject, release, retry, and the
sweeper's verdicts on runs that waited too long (queue, approval, cancellation).

Each is one transaction like every move: the rules are consulted first
(service.kernel.rulebook), then the change and its history entry are written
together. A control step that does not move the phase (a cancellation asked of
a running handler, an approval, a retry) is an entry with from == to, like a
new attempt, so the history says who decided what and when.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from service.errors import InvalidRequest, PhaseTransitionError
from service.kernel.base import KernelCore
from service.kernel.rulebook import Move
from service.kernel.rules import clock_start, terminate
from service.model.phases import RunPhase
from service.store.records import NO_LEASE, RetryPolicy, RunRow
from service.store.signals import CLAIMABLE
from service.store.transaction import RunTransaction

RETRY_JITTER = 0.1
"""A retry waits its backoff plus up to this fraction more, so failed runs spread out."""


class ControlMoves(KernelCore):
    # -- cancellation -----------------------------------------------------------

    def cancel(self, reason: str) -> RunPhase:
        """Stop the run: FAILED now, or, while a worker executes it, ask that worker.

        A run executing under a live lease gets `cancel_requested`: the worker
        learns it from its next heartbeat, stops the handler and fails the run
        through the normal path (so its incident and governance still happen);
        past ROK_CANCEL_GRACE_MS the sweeper fails it (`fail_cancel_overdue`).
        """
        with self._move(Move("cancel", RunPhase.FAILED), lease_required=False) as tx:
            row = tx.row
            if row.is_terminal:
                raise PhaseTransitionError(
                    row.id, row.phase, RunPhase.FAILED, f"{row.phase} is terminal"
                )
            who = self._who()
            lease = row.lease
            if row.phase is RunPhase.EXECUTING and lease is not None and lease.expires_at > tx.now:
                control = {"cancel_requested_at": tx.now, "cancel_reason": reason, "cancel_by": who}
                tx.record_event(
                    "cancel_requested",
                    f"cancel requested by {who}: {reason}; worker {lease.worker_id} is told",
                    {"by": who, "reason": reason},
                    control,
                )
                return tx.row.phase
            error = f"cancelled: {reason}"
            details = {"cancelled_by": who, "reason": reason}
            why = f"cancelled by {who}: {reason}"
            terminate(tx, RunPhase.FAILED, why, error, details, clock_start(tx))
            return tx.row.phase

    def fail_cancel_overdue(self, grace_ms: int) -> RunPhase:
        """The sweeper's verdict on a cancellation its worker did not carry out in time."""
        with self._move(None, lease_required=False) as tx:
            control = tx.row.control
            if tx.row.is_terminal or not control.cancel_requested:
                raise PhaseTransitionError(
                    self.run_id, tx.row.phase, RunPhase.FAILED, "no cancellation is pending"
                )
            why = (
                f"cancelled: {control.cancel_reason} (asked by {control.cancel_by}; the worker "
                f"did not stop within ROK_CANCEL_GRACE_MS={grace_ms})"
            )
            terminate(tx, RunPhase.FAILED, why, why, {"cancelled_by": control.cancel_by})
            return tx.row.phase

    # -- approval --------------------------------------------------------------

    def approve(self, by: str | None, reason: str | None) -> RunPhase:
        """Approve a run waiting for it: claimable from now on (when nobody holds it)."""
        with self._move(Move("approve", RunPhase.AUTHORIZED), lease_required=False) as tx:
            who = by or self._who()
            values: dict[str, Any] = _decided("approved", who, reason, tx.now)
            if tx.row.lease is None:
                values["available"] = True
                tx.notify(CLAIMABLE)
            tx.record_event(
                "approved",
                f"approved by {who}" + (f": {reason}" if reason else ""),
                {"by": who, "reason": reason},
                values,
            )
            return tx.row.phase

    def reject(self, by: str | None, reason: str | None) -> RunPhase:
        """Reject a run waiting for approval: it fails, the decision in its history."""
        with self._move(Move("reject", RunPhase.FAILED), lease_required=False) as tx:
            who = by or self._who()
            why = f"approval rejected by {who}" + (f": {reason}" if reason else "")
            self._end_approval(tx, "rejected", who, reason, why)
            return tx.row.phase

    def expire_approval(self) -> RunPhase:
        """The sweeper's verdict on a run whose approval deadline passed undecided."""
        with self._move(Move("reject", RunPhase.FAILED), lease_required=False) as tx:
            deadline = tx.row.control.approval_deadline
            if deadline is None or deadline > tx.now:
                raise PhaseTransitionError(
                    self.run_id, tx.row.phase, RunPhase.FAILED, "its approval has not expired"
                )
            why = f"approval expired: nobody decided before {deadline.isoformat()}"
            self._end_approval(tx, "expired", "rok sweeper", None, why)
            return tx.row.phase

    def _end_approval(
        self, tx: RunTransaction, state: str, who: str, reason: str | None, why: str
    ) -> None:
        changes = replace(clock_start(tx), control=_decided(state, who, reason, tx.now))
        terminate(tx, RunPhase.FAILED, why, why, {"approval": state, "by": who}, changes)

    def request_approval(self, tx: RunTransaction, reason: str | None) -> None:
        """A policy asked for a human at authorization: the run waits, off the queue."""
        deadline = tx.now + timedelta(milliseconds=self._settings.approval_timeout_ms)
        why = "approval required" + (f": {reason}" if reason else "")
        values: dict[str, Any] = {
            "approval_state": "pending",
            "approval_deadline": deadline,
            "available": False,
            **NO_LEASE,
        }
        tx.record_event("approval_requested", why, {"deadline": deadline.isoformat()}, values)

    # -- the queue ---------------------------------------------------------------

    def release(self) -> RunPhase:
        """The holder gives the run back: no lease, claimable again; nothing else changes."""
        with self._move(Move("release", RunPhase.CREATED)) as tx:
            if tx.row.lease is None:
                raise PhaseTransitionError(
                    self.run_id, tx.row.phase, tx.row.phase, "the run holds no lease"
                )
            tx.release_lease()
            tx.notify(CLAIMABLE)
            return tx.row.phase

    def fail_unstarted(self) -> RunPhase:
        """The sweeper's verdict on a run still in CREATED past its queue_timeout_ms."""
        with self._move(None, lease_required=False) as tx:
            deadline = tx.row.control.queue_deadline
            if tx.row.phase is not RunPhase.CREATED or deadline is None or deadline > tx.now:
                raise PhaseTransitionError(
                    self.run_id, tx.row.phase, RunPhase.FAILED, "its queue timeout has not passed"
                )
            waited = (deadline - tx.row.created_at).total_seconds() * 1000
            why = (
                f"never started: still CREATED when its queue_timeout_ms ({waited:.0f}) "
                f"passed at {deadline.isoformat()}"
            )
            terminate(tx, RunPhase.FAILED, why, why, {}, clock_start(tx))
            return tx.row.phase

    def _who(self) -> str:
        return self._caller.actor or "an operator"


def _decided(state: str, who: str, reason: str | None, at: datetime) -> dict[str, Any]:
    return {
        "approval_state": state,
        "approval_by": who,
        "approval_reason": reason,
        "approval_at": at,
    }


def retry_due(row: RunRow) -> RetryPolicy | None:
    """The retry policy when a failed execution of `row` becomes its next attempt."""
    policy = row.control.retry
    if policy is None or row.attempt >= row.max_attempts or row.control.cancel_requested:
        return None
    return policy


def schedule_retry(tx: RunTransaction, policy: RetryPolicy, error: str) -> None:
    """Record the failed attempt and make the next one claimable after its backoff."""
    row = tx.row
    delay_ms = policy.delay_ms(row.attempt) * (1 + random.uniform(0, RETRY_JITTER))
    not_before = tx.now + timedelta(milliseconds=delay_ms)
    attempt = row.attempt + 1
    tx.record_attempt(
        attempt,
        f"execution failed: {error}; attempt {row.attempt} of {row.max_attempts} failed, "
        f"attempt {attempt} no sooner than {not_before.isoformat()}",
        details={"error": error, "backoff_ms": round(delay_ms)},
        values={"error": error, "not_before": not_before},
    )
    tx.notify(CLAIMABLE)


def check_result_size(result: Any, limit: int) -> None:
    """InvalidRequest naming ROK_MAX_RESULT_BYTES for a result too large to keep."""
    try:
        size = len(json.dumps(result, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"result is not plain JSON: {exc}") from None
    if size > limit:
        raise InvalidRequest(
            f"result is {size} bytes of JSON; the limit is {limit} (ROK_MAX_RESULT_BYTES)"
        )
