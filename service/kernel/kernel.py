"""RunOrchestrationKernel: the single authority for one run's lifecycle.

No HTTP here. Every method is one store transaction: lock the run, check the
rules (phase table, lease, governance), write the move and its history, commit.
A kernel rebuilt for the same run id sees exactly what the last one left.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.config import Settings
from service.errors import (
    GovernanceCheckError,
    InvalidRequest,
    LeaseLost,
    PhaseTransitionError,
)
from service.model.audit import (
    FINALIZE_RUN,
    ORCHESTRATOR_DOMAIN,
    DomainAck,
    ReconciliationResult,
    custom_contract,
    default_contract,
    reconcile,
)
from service.model.phases import RunPhase, utc_now
from service.store.records import RunRecord
from service.store.runs import NewRun, RunStore, RunTransaction
from service.store.signals import CLAIMABLE, ack_key

GRANTED = "GRANTED"
"""The one authorization decision that lets a run proceed."""
INCIDENT_ACTION = ("incidents", "create_incident")


@dataclass(frozen=True)
class GovernanceOutcome:
    passed: bool
    reconciliation: ReconciliationResult


@dataclass(frozen=True)
class AckSpec:
    """One ack as a domain sends it (the kernel adds the time and whether it is late)."""

    domain: str
    action: str
    result_id: str | None = None
    error: str | None = None
    details: dict[str, Any] | None = None


MAX_ACK_BATCH = 100


@dataclass(frozen=True)
class RunSpec:
    """What a run is created with; everything optional has a default from Settings."""

    tenant_id: str | None = None
    handler: str | None = None
    input: Any = None
    run_timeout_ms: int | None = None
    expectations: Sequence[tuple[str, str, int | None]] | None = None
    idempotency_key: str | None = None
    max_attempts: int = 1
    priority: int = 0

    def fingerprint(self, run_id: str | None) -> str:
        """A digest of the request, so a reused idempotency key can be compared."""
        body = {
            "run_id": run_id,
            "tenant_id": self.tenant_id,
            "handler": self.handler,
            "input": self.input,
            "run_timeout_ms": self.run_timeout_ms,
            "expectations": [list(e) for e in self.expectations]
            if self.expectations is not None
            else None,
            "max_attempts": self.max_attempts,
            "priority": self.priority,
        }
        encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(encoded.encode()).hexdigest()


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
        self._declared = False

    # -- state ------------------------------------------------------------

    def load(self) -> RunRecord:
        return self._store.get(self.run_id)

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
        spec = self._spec
        timeout_ms = spec.run_timeout_ms or self._settings.default_run_timeout_ms
        grace_ms = self._settings.grace_period_ms
        if not self._settings.rac_enabled:
            contract: list[tuple[str, str, int]] = []
        elif spec.expectations is None:
            contract = default_contract(timeout_ms, grace_ms)
        else:
            contract = custom_contract(spec.expectations, timeout_ms, grace_ms)
        scope = None
        if spec.idempotency_key is not None:
            scope = f"{spec.tenant_id or ''}\x1f{spec.idempotency_key}"
        new = NewRun(
            id=self.run_id,
            tenant_id=spec.tenant_id,
            handler=spec.handler,
            input=spec.input,
            run_timeout_ms=timeout_ms,
            max_attempts=spec.max_attempts,
            priority=spec.priority,
            contract=contract,
            idempotency_scope=scope,
            request_fingerprint=spec.fingerprint(self._caller_run_id),
            created_at=self._clock(),
        )
        run_id, created = self._store.create(new)
        self.run_id = run_id
        self._declared = True
        return created

    # -- lifecycle ----------------------------------------------------------

    def authorize(
        self, decision: str, reason: str | None = None, begin_execution: bool = False
    ) -> RunPhase:
        """GRANTED -> AUTHORIZED; any other decision -> FAILED, the decision recorded.

        `begin_execution` also moves a granted run on to EXECUTING in the same
        transaction: a worker that starts at once saves a round trip, and the
        history still holds both moves.
        """
        with self._move() as tx:
            self._require(tx, RunPhase.CREATED, RunPhase.AUTHORIZED)
            started = self._clock_fields(tx)
            details = {"decision": decision}
            if decision == GRANTED:
                tx.transition(
                    RunPhase.AUTHORIZED, reason or "authorization granted", details, **started
                )
                if begin_execution:
                    tx.transition(RunPhase.EXECUTING, "execution started")
            else:
                why = f"authorization denied: {decision}" + (f" ({reason})" if reason else "")
                self._terminate(tx, RunPhase.FAILED, why, why, details, **started)
            return tx.row.phase

    def begin_execution(self) -> RunPhase:
        with self._move() as tx:
            self._require(tx, RunPhase.AUTHORIZED, RunPhase.EXECUTING)
            tx.transition(RunPhase.EXECUTING, "execution started")
            return tx.row.phase

    def execution_complete(self, success: bool, error: str | None = None) -> RunPhase:
        """-> GOVERNANCE_CHECK with the outcome; a failed run still owes its evidence."""
        with self._move() as tx:
            self._require(tx, RunPhase.EXECUTING, RunPhase.GOVERNANCE_CHECK)
            reason = (
                "execution succeeded"
                if success
                else f"execution failed: {error or 'no error given'}"
            )
            fields: dict[str, Any] = {"execution_success": success}
            if not success:
                fields["error"] = error or "execution failed"
            tx.transition(RunPhase.GOVERNANCE_CHECK, reason, {"success": success}, **fields)
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
        deadline = time.monotonic() + self._wait_seconds(timeout_ms)
        signals = self._store.signals
        first = True
        while True:
            with signals.subscribe(ack_key(self.run_id)) as sub:
                if self._wait_is_over(deadline, first):
                    break
                first = False
                sub.wait_blocking(min(deadline - time.monotonic(), signals.recheck_interval_s))
        return self.record_governance_check(require_all_acks, finalize)

    async def governance_check_async(
        self, timeout_ms: int | None = None, require_all_acks: bool = False, finalize: bool = False
    ) -> GovernanceOutcome:
        """The same check for an event loop: waiting costs a future, not a thread."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self._wait_seconds(timeout_ms)
        signals = self._store.signals
        first = True
        while True:
            with signals.subscribe(ack_key(self.run_id), loop) as sub:
                # one hop to a thread for the read and, when the wait is over,
                # the recording: the common case (acks all in) costs one hop
                outcome = await asyncio.to_thread(
                    self._record_if_over, deadline, first, require_all_acks, finalize
                )
                if outcome is not None:
                    return outcome
                first = False
                await sub.wait(min(deadline - time.monotonic(), signals.recheck_interval_s))

    def record_governance_check(
        self, require_all_acks: bool = False, finalize: bool = False
    ) -> GovernanceOutcome:
        """Reconcile now and record it.

        Strict mode (`require_all_acks`) fails the run when the check did not
        pass, commits that, and then raises GovernanceCheckError (its `outcome`
        carries the reconciliation), so an embedded caller cannot miss it.
        """
        outcome, failed = self._record_check(require_all_acks, finalize)
        if failed is not None:
            failed.outcome = outcome
            raise failed
        return outcome

    def _record_check(
        self, require_all_acks: bool, finalize: bool
    ) -> tuple[GovernanceOutcome, GovernanceCheckError | None]:
        with self._move() as tx:
            self._require(
                tx,
                RunPhase.GOVERNANCE_CHECK,
                RunPhase.GOVERNANCE_CHECK,
                "a governance check needs the run in GOVERNANCE_CHECK",
            )
            now = tx.now
            result = reconcile(tx.expectations(), tx.acks(), now, check_ended=True)
            passed = not result.missing and not result.failed
            tx.update(
                governance_passed=passed,
                governance_checked_at=now,
                governance_reconciliation=result.to_dict(),
            )
            error = None
            if require_all_acks and not passed:
                error = GovernanceCheckError(self.run_id, result.missing, result.failed)
                self._terminate(
                    tx,
                    RunPhase.FAILED,
                    str(error),
                    str(error),
                    {
                        "missing": [list(p) for p in result.missing],
                        "failed": [list(p) for p in result.failed],
                    },
                )
            elif finalize:
                self._finalize(tx, tx.row.execution_success is not False, None)
            return GovernanceOutcome(passed, result), error

    def begin_finalization(self) -> RunPhase:
        with self._move() as tx:
            self._require(tx, RunPhase.GOVERNANCE_CHECK, RunPhase.FINALIZING)
            self._require_governance(tx, RunPhase.FINALIZING)
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
            self._require_governance(tx, target)
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
            self._terminate(tx, RunPhase.COMPLETED, "run completed", None, {})
        else:
            why = error or tx.row.error or "finalized as failed"
            self._terminate(tx, RunPhase.FAILED, f"run failed: {why}", why, {})

    def fail(self, error: str) -> RunPhase:
        """-> FAILED from any non-terminal phase, with the finalize_run ack.

        Without a lease token this is the operator's override and needs none;
        with one, the token must still be the run's current lease, so a worker
        presumed dead cannot fail a run that was handed to someone else.
        """
        with self._move(lease_required=False) as tx:
            if tx.row.is_terminal:
                raise PhaseTransitionError(self.run_id, tx.row.phase, RunPhase.FAILED)
            fields = self._clock_fields(tx) if tx.row.clock_started_at is None else {}
            self._terminate(tx, RunPhase.FAILED, f"failed: {error}", error, {}, **fields)
            return tx.row.phase

    def fail_stale(self, why: str) -> RunPhase:
        """The sweeper's verdict on a run past its finalize_run deadline.

        The run is failed and an incident opened in the same transaction: no
        worker is left to report one, and an overdue run is exactly what the
        incidents domain exists to surface. The finalize_run ack lands after
        its deadline, so the reconciliation stays STALE.
        """
        with self._move(lease_required=False) as tx:
            if tx.row.is_terminal:
                raise PhaseTransitionError(self.run_id, tx.row.phase, RunPhase.FAILED)
            details: dict[str, Any] = {}
            if not any(a.pair == INCIDENT_ACTION for a in tx.acks()):
                incident_id = f"inc-{uuid.uuid4()}"
                tx.add_ack(
                    *INCIDENT_ACTION,
                    result_id=incident_id,
                    error=None,
                    details={"kind": "stale", "summary": why, "opened_by": "rok sweeper"},
                )
                details["incident_id"] = incident_id
            self._terminate(tx, RunPhase.FAILED, why, why, details)
            return tx.row.phase

    def release_for_retry(self, why: str) -> int:
        """Give the run back to the queue as a new attempt; return that attempt's number.

        The phase never moves backwards: the next claimer continues from the
        phase the run is in, and its history entries carry the new attempt.
        Only the sweeper calls this, for a run whose lease expired.
        """
        with self._move(lease_required=False) as tx:
            row = tx.row
            if row.is_terminal:
                raise PhaseTransitionError(self.run_id, row.phase, row.phase, "it is terminal")
            if row.attempt >= row.max_attempts:
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
                available=True,
                lease_worker_id=None,
                lease_token=None,
                lease_expires_at=None,
                lease_claim_id=None,
            )
            tx.notify(CLAIMABLE)
            return attempt

    def record_ungoverned_outcome(self, success: bool, error: str | None = None) -> RunPhase:
        """ROK_ENABLED=false: the seed's bare status update, in one transaction.

        The run walks the phase table to COMPLETED (or straight to FAILED) so
        its history stays a legal path, but no governance check is recorded:
        its reconciliation honestly reports the evidence it never received.
        """
        with self._move() as tx:
            if tx.row.is_terminal:
                raise PhaseTransitionError(
                    self.run_id, tx.row.phase, RunPhase.COMPLETED, f"{tx.row.phase} is terminal"
                )
            reason = "ungoverned (ROK_ENABLED=false)"
            fields = self._clock_fields(tx) if tx.row.clock_started_at is None else {}
            if not success:
                why = error or "execution failed"
                self._terminate(tx, RunPhase.FAILED, f"{reason}: {why}", why, {}, **fields)
                return tx.row.phase
            path = [
                RunPhase.AUTHORIZED,
                RunPhase.EXECUTING,
                RunPhase.GOVERNANCE_CHECK,
                RunPhase.FINALIZING,
            ]
            for phase in path[path.index(tx.row.phase) + 1 :] if tx.row.phase in path else path:
                tx.transition(phase, reason, **fields)
                fields = {}
            self._terminate(tx, RunPhase.COMPLETED, reason, None, {}, execution_success=True)
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
        """Record a domain's ack; on a terminal run it is kept as drift, nothing else changes."""
        return self.ack_many([AckSpec(domain, action, result_id, error, details)])[0]

    def ack_many(self, batch: Sequence[AckSpec]) -> list[DomainAck]:
        """Record several acks in one transaction: all of them, in order, or none.

        Each is judged as `ack` judges it (a duplicate is drift, on a terminal
        run each is late); one commit instead of one per ack is what a domain
        reporting several actions at once saves.
        """
        if not batch:
            raise InvalidRequest("a batch of acks needs at least one ack")
        if len(batch) > MAX_ACK_BATCH:
            raise InvalidRequest(f"a batch holds at most {MAX_ACK_BATCH} acks, not {len(batch)}")
        for index, spec in enumerate(batch):
            if spec.domain == ORCHESTRATOR_DOMAIN:
                where = "" if len(batch) == 1 else f"ack {index}: "
                raise InvalidRequest(
                    f"{where}domain 'orchestrator' is the kernel's own; clients cannot ack it"
                )
        with self._store.transaction(self.run_id, self._clock) as tx:
            late = tx.row.is_terminal
            return [
                tx.add_ack(s.domain, s.action, s.result_id, s.error, late=late, details=s.details)
                for s in batch
            ]

    # -- rules --------------------------------------------------------------

    @contextlib.contextmanager
    def _move(self, lease_required: bool = True) -> Iterator[RunTransaction]:
        """A transaction for a lifecycle move; the lease is checked before anything."""
        with self._store.transaction(self.run_id, self._clock) as tx:
            if lease_required or self._lease_token is not None:
                self._check_lease(tx)
            yield tx
            if self._keep_records:
                self.last_record = tx.record()

    def _check_lease(self, tx: RunTransaction) -> None:
        lease = tx.row.lease
        token = self._lease_token
        if lease is None:
            if token is not None:
                raise LeaseLost(self.run_id, "the run holds no lease; the token is stale")
            return
        if token is None:
            raise LeaseLost(
                self.run_id,
                f"the run is leased to worker {lease.worker_id}; send its X-Lease-Token",
            )
        if token != lease.token:
            raise LeaseLost(self.run_id, "the token is not the run's current lease")
        if lease.expires_at <= tx.now:
            raise LeaseLost(self.run_id, "the lease expired")

    def _require(
        self, tx: RunTransaction, expected: RunPhase, requested: RunPhase, why: str = ""
    ) -> None:
        if tx.row.phase is not expected:
            if not why and tx.row.is_terminal:
                why = f"{tx.row.phase} is terminal"
            raise PhaseTransitionError(self.run_id, tx.row.phase, requested, why)

    def _require_governance(self, tx: RunTransaction, requested: RunPhase) -> None:
        if not tx.row.governance_recorded:
            raise PhaseTransitionError(
                self.run_id, tx.row.phase, requested, "no governance check was recorded"
            )

    def _clock_fields(self, tx: RunTransaction) -> dict[str, Any]:
        """The audit clock starts when the run leaves CREATED."""
        finalize_ms = self._finalize_deadline_ms(tx)
        fields: dict[str, Any] = {"clock_started_at": tx.now}
        if finalize_ms is not None:
            fields["finalize_deadline"] = tx.now + timedelta(milliseconds=finalize_ms)
        return fields

    def _finalize_deadline_ms(self, tx: RunTransaction) -> int | None:
        for exp in tx.expectations():
            if exp.pair == FINALIZE_RUN:
                return exp.deadline_ms
        return None

    def _terminate(
        self,
        tx: RunTransaction,
        phase: RunPhase,
        reason: str,
        error: str | None,
        details: dict[str, Any],
        **fields: Any,
    ) -> None:
        fields.update(
            available=False,
            lease_worker_id=None,
            lease_token=None,
            lease_expires_at=None,
            lease_claim_id=None,
        )
        if error is not None:
            fields["error"] = error
        tx.transition(phase, reason, details, **fields)
        # The run's own contract decides, not today's RAC_ENABLED: a run declared
        # with finalize_run owes it even if RAC was switched off since.
        if any(e.pair == FINALIZE_RUN for e in tx.expectations()):
            tx.add_ack(*FINALIZE_RUN, result_id=phase.value, error=None)

    def _record_if_over(
        self, deadline: float, first: bool, require_all_acks: bool, finalize: bool
    ) -> GovernanceOutcome | None:
        if not self._wait_is_over(deadline, first):
            return None
        return self.record_governance_check(require_all_acks, finalize)

    def _wait_is_over(self, deadline: float, first: bool) -> bool:
        """Read the run once (subscribed already, so no ack slips between).

        The first read also refuses a run that is not in GOVERNANCE_CHECK; a
        later one ends the wait when the run left it (failed from outside),
        and the recording then reports the phase it is in.
        """
        phase, outstanding = self._store.governance_wait_state(self.run_id)
        if first and phase is not RunPhase.GOVERNANCE_CHECK:
            raise PhaseTransitionError(
                self.run_id,
                phase,
                RunPhase.GOVERNANCE_CHECK,
                "a governance check needs the run in GOVERNANCE_CHECK",
            )
        return (
            phase is not RunPhase.GOVERNANCE_CHECK
            or not outstanding
            or (time.monotonic() >= deadline)
        )

    def _wait_seconds(self, timeout_ms: int | None) -> float:
        ms = self._settings.governance_timeout_ms if timeout_ms is None else timeout_ms
        return ms / 1000.0


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
    )
    return RunOrchestrationKernel(
        run_id or str(uuid.uuid4()),
        store,
        settings,
        spec=spec,
        lease_token=lease_token,
        caller_run_id=run_id,
    )
