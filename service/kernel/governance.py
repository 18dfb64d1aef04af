"""The governance check: wait for the domains' acks, then judge and record the run.

The wait holds no database connection: it subscribes to the run's ack signal
first (so no ack slips between a read and the wait), reads what is still
outstanding, and sleeps until an ack lands here, on another replica (PG
LISTEN/NOTIFY) or the re-check interval passes.

The first look of an asynchronous check is made inside the transaction that
records it (`AckWait.until_over`): usually the acks came before the check, and
then the check costs that one transaction. When something is still
outstanding that transaction rolls back having written nothing (`_NotYet`),
and the check waits; each later look is one statement (service.store.waits).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable

from service.errors import GovernanceCheckError, PhaseTransitionError
from service.kernel.spec import GovernanceOutcome
from service.model.audit import ORCHESTRATOR_DOMAIN, ReconciliationResult, reconcile
from service.model.phases import RunPhase
from service.store.outbox import EventType
from service.store.runs import RunStore
from service.store.signals import ack_key
from service.store.transaction import RunTransaction
from service.store.waits import wait_state

CHECK_NEEDS = "a governance check needs the run in GOVERNANCE_CHECK"


class _NotYet(Exception):
    """Raised inside the recording transaction of a first look that must wait: it rolls
    the transaction back, having written nothing."""


_DECIDING: contextvars.ContextVar[AckWait | None] = contextvars.ContextVar(
    "rok_check_deciding", default=None
)
"""The wait whose first look is being made inside the recording transaction (judge asks it)."""


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
        deciding = _DECIDING.get()
        if deciding is not None and not deciding.over_in(tx):
            raise _NotYet
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
        """Wait on the loop; `on_over` (run in a thread, like each look) records the check.

        The first look is `on_over` itself (see the module's docstring): when
        nothing is outstanding, the check costs one hop to a thread and one
        transaction. Each later look, after a wake-up, is one statement, and
        the recording follows it in the same hop.
        """
        signals = self._store.signals
        loop = asyncio.get_running_loop()
        look: Callable[[Callable[[], GovernanceOutcome]], GovernanceOutcome | None]
        look = self._record_unless_waiting
        while True:
            with signals.subscribe(ack_key(self._run_id), loop) as sub:
                outcome = await asyncio.to_thread(look, on_over)
                if outcome is not None:
                    return outcome
                look = self._record_if_over
                await sub.wait(self._next_wait_s())

    def _record_unless_waiting(
        self, on_over: Callable[[], GovernanceOutcome]
    ) -> GovernanceOutcome | None:
        """The first look, inside the recording transaction: `judge` raises _NotYet there
        when a domain expectation is outstanding before the deadline. Whatever else
        ends it (a run not in GOVERNANCE_CHECK, of another tenant) ends the wait too."""
        self._first = False
        token = _DECIDING.set(self)
        try:
            outcome = on_over()
        except _NotYet:
            return None
        except BaseException:
            self._ended()
            raise
        finally:
            _DECIDING.reset(token)
        self._ended()
        return outcome

    def _record_if_over(self, on_over: Callable[[], GovernanceOutcome]) -> GovernanceOutcome | None:
        return on_over() if self.is_over() else None

    def over_in(self, tx: RunTransaction) -> bool:
        """Whether the wait is over as the recording transaction sees the run (in
        GOVERNANCE_CHECK, its verdict not recorded): nothing outstanding, or time is up."""
        acked = {(a.domain, a.action) for a in tx.acks() if not a.late}
        outstanding = [
            e
            for e in tx.expectations()
            if e.domain != ORCHESTRATOR_DOMAIN and (e.domain, e.action) not in acked
        ]
        return not outstanding or time.monotonic() >= self._deadline

    def is_over(self) -> bool:
        """Read the run once (subscribed already, so no ack slips between).

        The first read also refuses a run that is not in GOVERNANCE_CHECK; a
        later one ends the wait when the run left it (failed from outside),
        and the recording then reports the phase it is in.
        """
        state = wait_state(self._store.db, self._run_id, self._tenant_id)
        first, self._first = self._first, False
        if first and state.phase is not RunPhase.GOVERNANCE_CHECK:
            raise PhaseTransitionError(
                self._run_id, state.phase, RunPhase.GOVERNANCE_CHECK, CHECK_NEEDS
            )
        over = (
            state.phase is not RunPhase.GOVERNANCE_CHECK
            or not state.owes
            or time.monotonic() >= self._deadline
        )
        if over:
            self._ended()
        return over

    def _ended(self) -> None:
        if self._store.observers:
            self._store.observers.check_waited(time.monotonic() - self._started)

    def _next_wait_s(self) -> float:
        return min(self._deadline - time.monotonic(), self._store.signals.recheck_interval_s)
