"""RunOrchestrationKernel: the single authority for one run's lifecycle.

No HTTP here. Every method is one store transaction: lock the run, check the
rules (phase table, lease, governance), write the move and its history, commit.
A kernel rebuilt for the same run id sees exactly what the last one left.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from service.config import Settings
from service.errors import InvalidRequest, PhaseTransitionError
from service.kernel.control import ControlMoves, check_result_size, retry_due, schedule_retry
from service.kernel.governance import CHECK_NEEDS, judge
from service.kernel.rulebook import Move
from service.kernel.rules import (
    clock_start,
    fail_stale,
    require_governance,
    require_phase,
    terminate,
    walk_ungoverned,
)
from service.kernel.spec import (
    APPROVAL_REQUIRED,
    GRANTED,
    SERVICE,
    AckSpec,
    Caller,
    GovernanceOutcome,
    RunSpec,
    check_ack_room,
    check_batch,
)
from service.model.audit import DomainAck
from service.model.phases import RunPhase
from service.store.records import RetryPolicy, RunChanges
from service.store.runs import RunStore
from service.store.signals import CLAIMABLE
from service.store.transaction import RunTransaction


class RunOrchestrationKernel(ControlMoves):
    """Drives one run through the phase machine, persisting every step."""

    # -- T0 ---------------------------------------------------------------

    def declare_expectations(self) -> bool:
        """Create the run with its audit contract in one transaction.

        Idempotent: declaring again (or replaying the same idempotency key)
        returns False and writes nothing. Raises RunAlreadyExists only for a
        different request under an explicit run id, IdempotencyConflict for a
        different request under the same key.
        """
        if self._declared:
            return False
        new = self._spec.new_run(self.run_id, self._caller_run_id, self._settings, self._clock())
        new = replace(new, created_by=self._caller.actor)
        run_id, created = self._store.create(new)
        self.run_id = run_id
        self._declared = True
        return created

    # -- lifecycle ----------------------------------------------------------
    # Each move is one transaction; the store refuses any move the phase table
    # forbids, so a method states only what the table cannot: its preconditions.

    def authorize(
        self, decision: str, reason: str | None = None, begin_execution: bool = False
    ) -> RunPhase:
        """GRANTED -> AUTHORIZED; APPROVAL_REQUIRED -> a human decides first (the run
        waits off the queue, DESIGN section 11); any other decision -> FAILED.

        `begin_execution` also moves a granted run on to EXECUTING in the same
        transaction: a worker that starts at once saves a round trip, and the
        history still holds both moves.
        """
        # a refusal names AUTHORIZED, what authorization is asked for, even for a denial
        target = RunPhase.AUTHORIZED
        with self._move(Move("authorize", target)) as tx:
            if decision == APPROVAL_REQUIRED:
                if tx.row.control.approval_state == "approved":
                    raise PhaseTransitionError(
                        self.run_id, tx.row.phase, target, "the run was approved already; grant it"
                    )
                self.request_approval(tx, reason)
                return tx.row.phase
            started = clock_start(tx)
            details = {"decision": decision}
            if decision == GRANTED:
                tx.transition(
                    RunPhase.AUTHORIZED, reason or "authorization granted", details, started
                )
                if begin_execution:
                    tx.transition(RunPhase.EXECUTING, "execution started")
            else:
                why = f"authorization denied: {decision}" + (f" ({reason})" if reason else "")
                terminate(tx, RunPhase.FAILED, why, why, details, started)
            return tx.row.phase

    def begin_execution(self) -> RunPhase:
        with self._move(Move("begin_execution", RunPhase.EXECUTING)) as tx:
            tx.transition(RunPhase.EXECUTING, "execution started")
            return tx.row.phase

    def execution_complete(
        self, success: bool, error: str | None = None, result: Any = None
    ) -> RunPhase:
        """-> GOVERNANCE_CHECK with the outcome; a failed run still owes its evidence.

        A failure with attempts left under the run's `retry` policy is the
        next attempt instead: the run stays EXECUTING, claimable after its
        backoff. `result` (JSON, at most ROK_MAX_RESULT_BYTES) is kept on the run.
        """
        if result is not None:
            check_result_size(result, self._settings.max_result_bytes)
        move = Move("execution_complete", RunPhase.GOVERNANCE_CHECK, success=success)
        with self._move(move) as tx:
            control = None if result is None else {"result": result}
            if success:
                reason = "execution succeeded"
                changes = RunChanges(execution_success=True, control=control)
            else:
                why = error or "execution failed"
                policy = retry_due(tx.row) if tx.row.phase is RunPhase.EXECUTING else None
                if policy is not None:
                    schedule_retry(tx, policy, why)
                    return tx.row.phase
                reason = f"execution failed: {error or 'no error given'}"
                changes = RunChanges(execution_success=False, error=why, control=control)
            tx.transition(RunPhase.GOVERNANCE_CHECK, reason, {"success": success}, changes)
            return tx.row.phase

    def governance_check(
        self, timeout_ms: int | None = None, require_all_acks: bool = False, finalize: bool = False
    ) -> GovernanceOutcome:
        """Wait (blocking this thread) for the domain acks, then record the check.

        `finalize` ends the run in the same transaction as the check, with the
        outcome execution_complete recorded (what a worker's finalize would
        send): one round trip fewer, and still a recorded check before the end.
        A strict check that did not pass has failed the run already.
        """
        self._ack_wait(timeout_ms).blocking()
        return self.record_governance_check(require_all_acks, finalize)

    async def governance_check_async(
        self, timeout_ms: int | None = None, require_all_acks: bool = False, finalize: bool = False
    ) -> GovernanceOutcome:
        """The same check for an event loop: waiting costs a future, not a thread."""
        wait = self._ack_wait(timeout_ms)
        return await wait.until_over(
            lambda: self.record_governance_check(require_all_acks, finalize)
        )

    def record_governance_check(
        self, require_all_acks: bool = False, finalize: bool = False
    ) -> GovernanceOutcome:
        """Reconcile now and record it.

        Strict mode (`require_all_acks`) fails the run when the check did not
        pass, commits that, and then raises GovernanceCheckError (its `outcome`
        carries the reconciliation), so an embedded caller cannot miss it.
        """
        with self._move(Move("governance_check", RunPhase.GOVERNANCE_CHECK)) as tx:
            require_phase(tx, RunPhase.GOVERNANCE_CHECK, RunPhase.GOVERNANCE_CHECK, CHECK_NEEDS)
            outcome, failure = judge(tx, require_all_acks)
            if failure is not None:
                result = outcome.reconciliation
                missing = [list(p) for p in result.missing]
                failed = [list(p) for p in result.failed]
                why = str(failure)
                terminate(tx, RunPhase.FAILED, why, why, {"missing": missing, "failed": failed})
            elif finalize:
                self._finalize(tx, tx.row.execution_success is not False, None)
        if failure is not None:
            raise failure  # after the commit: the run has failed either way
        return outcome

    def begin_finalization(self) -> RunPhase:
        with self._move(Move("begin_finalization", RunPhase.FINALIZING)) as tx:
            tx.transition(RunPhase.FINALIZING, "finalization started")
            return tx.row.phase

    def finalize(self, success: bool = True, error: str | None = None) -> RunPhase:
        """-> COMPLETED or FAILED with the finalize_run ack, in one transaction, once."""
        target = RunPhase.COMPLETED if success else RunPhase.FAILED
        with self._move(Move("finalize", target, success=success)) as tx:
            self._finalize(tx, success, error)
            return tx.row.phase

    def _finalize(self, tx: RunTransaction, success: bool, error: str | None) -> None:
        """finalize's move inside `tx` (the check can end with it, in its transaction)."""
        phase = tx.row.phase
        target = RunPhase.COMPLETED if success else RunPhase.FAILED
        if phase not in (RunPhase.GOVERNANCE_CHECK, RunPhase.FINALIZING):
            why = (
                f"{phase} is terminal"
                if tx.row.is_terminal
                else "finalize needs GOVERNANCE_CHECK or FINALIZING; use fail to abandon a run"
            )
            raise PhaseTransitionError(self.run_id, phase, target, why)
        if success:
            require_governance(tx, target)
            if tx.row.execution_success is False:
                raise PhaseTransitionError(
                    self.run_id,
                    phase,
                    target,
                    "its execution failed; finalize with success=false",
                )
        if phase is RunPhase.GOVERNANCE_CHECK and tx.row.governance_recorded:
            tx.transition(RunPhase.FINALIZING, "finalization started")
        if success:
            terminate(tx, RunPhase.COMPLETED, "run completed", None, {})
        else:
            why = error or tx.row.error or "finalized as failed"
            terminate(tx, RunPhase.FAILED, f"run failed: {why}", why, {})

    def fail(self, error: str) -> RunPhase:
        """-> FAILED from any non-terminal phase, with the finalize_run ack.

        Without a lease token this is the operator's override and needs none;
        with one, the token must still be the run's current lease, so a worker
        presumed dead cannot fail a run that was handed to someone else.
        """
        with self._move(Move("fail", RunPhase.FAILED), lease_required=False) as tx:
            terminate(tx, RunPhase.FAILED, f"failed: {error}", error, {}, clock_start(tx))
            return tx.row.phase

    def fail_stale(self, why: str) -> RunPhase:
        """The sweeper's verdict on a run past its finalize_run deadline.

        The run is failed and an incident opened in the same transaction: no
        worker is left to report one, and an overdue run is exactly what the
        incidents domain exists to surface. The finalize_run ack lands after
        its deadline, so the reconciliation stays STALE.
        """
        with self._move(None, lease_required=False) as tx:
            fail_stale(tx, why)  # with its incident and its run.stale alert
            return tx.row.phase

    def release_for_retry(self, why: str) -> int:
        """Give the run back to the queue as a new attempt; return that attempt's number.

        The phase never moves backwards: the next claimer continues from the
        phase the run is in, and its history entries carry the new attempt.
        Only the sweeper calls this, for a run whose lease expired.
        """
        with self._move(None, lease_required=False) as tx:
            row = tx.row
            if not row.is_terminal and row.attempt >= row.max_attempts:
                raise InvalidRequest(
                    f"run {self.run_id} used all {row.max_attempts} attempts; fail it instead"
                )
            attempt = row.attempt + 1
            # `error` keeps what the run reported (an execution error survives);
            # why the attempt ended is the reason of the attempt entry.
            tx.record_attempt(
                attempt,
                f"{why}; attempt {row.attempt} of {row.max_attempts} ended, "
                f"attempt {attempt} begins",
            )
            tx.notify(CLAIMABLE)
            return attempt

    def record_ungoverned_outcome(self, success: bool, error: str | None = None) -> RunPhase:
        """ROK_ENABLED=false: the seed's bare status update, in one transaction.

        Refused by a service that governs (ROK_ENABLED=true): see walk_ungoverned."""
        target = RunPhase.COMPLETED if success else RunPhase.FAILED
        move = Move("ungoverned_outcome", target, success, governed=self._settings.rok_enabled)
        with self._move(move) as tx:
            walk_ungoverned(tx, success, error, governed=self._settings.rok_enabled)
            return tx.row.phase

    # -- acks -----------------------------------------------------------------

    def ack(
        self,
        domain: str,
        action: str,
        result_id: str | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> DomainAck:
        """Record a domain's ack; after the verdict or the end it is late: drift, nothing else."""
        return self.ack_many([AckSpec(domain, action, result_id, error, details)])[0]

    def ack_many(self, batch: Sequence[AckSpec]) -> list[DomainAck]:
        """Record several acks in one transaction: all of them, in order, or none.

        Each is judged as `ack` judges it (a duplicate is drift; once the governance
        verdict is recorded or the run ended each is late, for the verdict never
        changes); one commit instead of one per ack is what a domain
        reporting several actions at once saves.
        """
        check_batch(batch)
        with self._store.transaction(self.run_id, self._clock, self._caller.actor) as tx:
            self._check_tenant(tx.row.tenant_id)
            check_ack_room(tx.ack_count(), len(batch), self._settings.max_acks_per_run)
            late = tx.row.is_terminal or tx.row.governance_recorded
            return [
                tx.add_ack(s.domain, s.action, s.result_id, s.error, late=late, details=s.details)
                for s in batch
            ]


def create_rok(
    run_id: str | None = None,
    tenant_id: str | None = None,
    run_timeout_ms: int | None = None,
    *,
    store: RunStore,
    settings: Settings,
    handler: str | None = None,
    input: Any = None,
    expectations: Sequence[tuple[str, str, int | None]] | None = None,
    idempotency_key: str | None = None,
    max_attempts: int = 1,
    priority: int = 0,
    lease_token: str | None = None,
    caller: Caller = SERVICE,
    not_before: datetime | None = None,
    queue_timeout_ms: int | None = None,
    retry: RetryPolicy | None = None,
    requires_approval: bool = False,
    approval_timeout_ms: int | None = None,
    traceparent: str | None = None,
) -> RunOrchestrationKernel:
    """A kernel for a new (or existing) run; call declare_expectations() to write T0."""
    spec = RunSpec(
        tenant_id=tenant_id,
        handler=handler,
        input=input,
        run_timeout_ms=run_timeout_ms,
        expectations=expectations,
        idempotency_key=idempotency_key,
        max_attempts=max_attempts,
        priority=priority,
        not_before=not_before,
        queue_timeout_ms=queue_timeout_ms,
        retry=retry,
        requires_approval=requires_approval,
        approval_timeout_ms=approval_timeout_ms,
        traceparent=traceparent,
    )
    return RunOrchestrationKernel(
        run_id or str(uuid.uuid4()),
        store,
        settings,
        spec=spec,
        lease_token=lease_token,
        caller_run_id=run_id,
        caller=caller,
    )
