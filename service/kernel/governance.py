"""The governance check: wait for the domains' acks, then judge and record the run.

The wait holds no database connection: it subscribes to the run's ack signal
first (so no ack slips between a read and the wait), reads what is still
outstanding, and sleeps until an ack lands here, on another replica (PG
LISTEN/NOTIFY) or the re-check interval passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from service.errors import GovernanceCheckError, PhaseTransitionError
from service.kernel.spec import GovernanceOutcome
from service.model.audit import ReconciliationResult, reconcile
from service.model.phases import RunPhase
from service.store.outbox import EventType
from service.store.runs import RunStore
from service.store.signals import ack_key
from service.store.transaction import RunTransaction

CHECK_NEEDS = "a governance check needs the run in GOVERNANCE_CHECK"


def judge(
    tx: RunTransaction, require_all_acks: bool
) -> tuple[GovernanceOutcome, GovernanceCheckError | None]:
    """Reconcile the run now and record the verdict in `tx`.

    *Passed* means nothing missing and no failed ack (drift is reported, not
    blocking). Returns the outcome and, for a strict check that did not pass,
    the error that fails the run (carrying the outcome).

    The verdict is recorded once and never changes: on a run whose verdict is
    recorded, a check answers that verdict (the same passed and
    reconciliation) and writes nothing; acks that came since are late.
    """
    recorded = tx.row.governance_reconciliation
    if tx.row.governance_recorded and recorded is not None:
        result = ReconciliationResult.from_dict(recorded)
        passed = bool(tx.row.governance_passed)
    else:
        result = reconcile(tx.expectations(), tx.acks(), tx.now, check_ended=True)
        passed = not result.missing and not result.failed
        tx.record_governance(passed, result.to_dict())
        if not passed:  # alerted once, as the verdict is recorded once
            tx.emit(EventType.GOVERNANCE_INCOMPLETE, _incomplete(result, require_all_acks))
    outcome = GovernanceOutcome(passed, result)
    if require_all_acks and not passed:
        error = GovernanceCheckError(tx.row.id, result.missing, result.failed)
        error.outcome = outcome
        return outcome, error
    return outcome, None


def _incomplete(result: ReconciliationResult, strict: bool) -> dict[str, object]:
    """What governance.incomplete says: the evidence missing or failed, and the verdict."""
    return {
        "status": result.status.value,
        "missing": [list(p) for p in result.missing],
        "failed": [list(p) for p in result.failed],
        "strict": strict,
    }


class AckWait:
    """Waits, blocking or on an event loop, until a run's domain acks are in or time is up."""

    def __init__(
        self, store: RunStore, run_id: str, timeout_s: float, tenant_id: str | None = None
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._tenant_id = tenant_id  # the caller's: a run of another tenant is not found
        self._started = time.monotonic()
        self._deadline = self._started + timeout_s
        self._first = True

    def blocking(self) -> None:
        signals = self._store.signals
        while True:
            with signals.subscribe(ack_key(self._run_id)) as sub:
                if self.is_over():
                    return
                sub.wait_blocking(self._next_wait_s())

    async def until_over(self, on_over: Callable[[], GovernanceOutcome]) -> GovernanceOutcome:
        """Wait on the loop; `on_over` (run in a thread, like each read) records the check.

        One hop to a thread does the read and, when the wait is over, the
        recording: the common case (acks all in) costs one hop.
        """
        signals = self._store.signals
        loop = asyncio.get_running_loop()
        while True:
            with signals.subscribe(ack_key(self._run_id), loop) as sub:
                outcome = await asyncio.to_thread(self._record_if_over, on_over)
                if outcome is not None:
                    return outcome
                await sub.wait(self._next_wait_s())

    def _record_if_over(self, on_over: Callable[[], GovernanceOutcome]) -> GovernanceOutcome | None:
        return on_over() if self.is_over() else None

    def is_over(self) -> bool:
        """Read the run once (subscribed already, so no ack slips between).

        The first read also refuses a run that is not in GOVERNANCE_CHECK; a
        later one ends the wait when the run left it (failed from outside),
        and the recording then reports the phase it is in.
        """
        phase, outstanding = self._store.governance_wait_state(self._run_id, self._tenant_id)
        first, self._first = self._first, False
        if first and phase is not RunPhase.GOVERNANCE_CHECK:
            raise PhaseTransitionError(self._run_id, phase, RunPhase.GOVERNANCE_CHECK, CHECK_NEEDS)
        now = time.monotonic()
        over = phase is not RunPhase.GOVERNANCE_CHECK or not outstanding or now >= self._deadline
        if over and self._store.observers:
            self._store.observers.check_waited(now - self._started)
        return over

    def _next_wait_s(self) -> float:
        return min(self._deadline - time.monotonic(), self._store.signals.recheck_interval_s)
