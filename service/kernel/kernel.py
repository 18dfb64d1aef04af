"""RunOrchestrationKernel: the single authority for one run's lifecycle.

No HTTP here. Every method is one store transaction: lock the run, check the
rules (phase table, lease, governance), write the move and its history, commit.
A kernel rebuilt for the same run id sees exactly what the last one left.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from service.config import Settings
from service.errors import InvalidRequest, PhaseTransitionError, RunNotFound
from service.kernel.governance import CHECK_NEEDS, AckWait, judge
from service.kernel.rules import (
    check_lease,
    clock_start,
    fail_stale,
    require_governance,
    require_phase,
    terminate,
    walk_ungoverned,
)
from service.kernel.spec import (
    GRANTED,
    SERVICE,
    AckSpec,
    Caller,
    GovernanceOutcome,
    RunSpec,
    check_ack_room,
    check_batch,
)
from service.model.audit import DomainAck, ReconciliationResult
from service.model.phases import RunPhase, utc_now
from service.store.records import RunChanges, RunRecord
from service.store.runs import RunStore
from service.store.signals import CLAIMABLE
from service.store.transaction import RunTransaction


class RunOrchestrationKernel:
    """Drives one run through the phase machine, persisting every step."""

    def __init__(
        self,
        run_id: str,
        store: RunStore,
        settings: Settings,
        spec: RunSpec | None = None,
        lease_token: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        caller_run_id: str | None = None,
        keep_records: bool = False,
        caller: Caller = SERVICE,
    ) -> None:
        self.run_id = run_id
        # keep_records: read the run back inside each move's transaction, so
        # a caller answering with the run (the API) needs no second read, and
        # shows the run exactly as its move committed it
        self._keep_records = keep_records
        self.last_record: RunRecord | None = None
        self._store = store
        self._settings = settings
        self._spec = spec or RunSpec()
        self._lease_token = lease_token
        self._clock = clock
        self._caller_run_id = caller_run_id
        self._caller = caller
        self._declared = False

    # -- state ------------------------------------------------------------

    def load(self) -> RunRecord:
        record = self._store.get(self.run_id)
        self._check_tenant(record.row.tenant_id)
        return record

    @property
    def phase(self) -> RunPhase:
        return self.load().phase

    @property
    def is_terminal(self) -> bool:
        return self.load().row.is_terminal

    def reconciliation(self) -> ReconciliationResult:
        return self.load().reconciliation(self._clock())

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
        """GRANTED -> AUTHORIZED; any other decision -> FAILED, the decision recorded.

        `begin_execution` also moves a granted run on to EXECUTING in the same
        transaction: a worker that starts at once saves a round trip, and the
        history still holds both moves.
        """
        with self._move() as tx:
            # a denial could fail a run in any phase; only a CREATED run is judged
            require_phase(tx, RunPhase.CREATED, RunPhase.AUTHORIZED, "")
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
        with self._move() as tx:
            tx.transition(RunPhase.EXECUTING, "execution started")
            return tx.row.phase

    def execution_complete(self, success: bool, error: str | None = None) -> RunPhase:
        """-> GOVERNANCE_CHECK with the outcome; a failed run still owes its evidence."""
        with self._move() as tx:
            if success:
                reason, changes = "execution succeeded", RunChanges(execution_success=True)
            else:
                reason = f"execution failed: {error or 'no error given'}"
                changes = RunChanges(execution_success=False, error=error or "execution failed")
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
        with self._move() as tx:
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
        with self._move() as tx:
            require_governance(tx, RunPhase.FINALIZING)
            tx.transition(RunPhase.FINALIZING, "finalization started")
            return tx.row.phase

    def finalize(self, success: bool = True, error: str | None = None) -> RunPhase:
        """-> COMPLETED or FAILED with the finalize_run ack, in one transaction, once."""
        with self._move() as tx:
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
        with self._move(lease_required=False) as tx:
            terminate(tx, RunPhase.FAILED, f"failed: {error}", error, {}, clock_start(tx))
            return tx.row.phase

    def fail_stale(self, why: str) -> RunPhase:
        """The sweeper's verdict on a run past its finalize_run deadline.

        The run is failed and an incident opened in the same transaction: no
        worker is left to report one, and an overdue run is exactly what the
        incidents domain exists to surface. The finalize_run ack lands after
        its deadline, so the reconciliation stays STALE.
        """
        with self._move(lease_required=False) as tx:
            fail_stale(tx, why)  # with its incident and its run.stale alert
            return tx.row.phase

    def release_for_retry(self, why: str) -> int:
        """Give the run back to the queue as a new attempt; return that attempt's number.

        The phase never moves backwards: the next claimer continues from the
        phase the run is in, and its history entries carry the new attempt.
        Only the sweeper calls this, for a run whose lease expired.
        """
        with self._move(lease_required=False) as tx:
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
        with self._move() as tx:
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

    # -- the transaction of a move ---------------------------------------------

    @contextlib.contextmanager
    def _move(self, lease_required: bool = True) -> Iterator[RunTransaction]:
        """A transaction for a lifecycle move; the lease is checked before anything."""
        with self._store.transaction(self.run_id, self._clock, self._caller.actor) as tx:
            self._check_tenant(tx.row.tenant_id)
            if lease_required or self._lease_token is not None:
                check_lease(tx, self._lease_token)
            yield tx
            if self._keep_records:
                self.last_record = tx.record()

    def _check_tenant(self, tenant_id: str | None) -> None:
        """A run of another tenant does not exist for this caller (its existence never leaks)."""
        if self._caller.tenant is not None and tenant_id != self._caller.tenant:
            raise RunNotFound(self.run_id)

    def _ack_wait(self, timeout_ms: int | None) -> AckWait:
        """The wait before a check; like a move, it finds no run of another tenant."""
        ms = self._settings.governance_timeout_ms if timeout_ms is None else timeout_ms
        return AckWait(self._store, self.run_id, ms / 1000.0, self._caller.tenant)


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
