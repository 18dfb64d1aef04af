"""Observers: what the store, the kernel and the sweeper did, told after it committed.

The API counts runs, moves, checks and claims for /metrics without the layers
below it knowing Prometheus: a `StoreObserver` is added to the RunStore's
`observers` (one list per store, so two apps in one process never count each
other's runs), and each write calls it once its transaction has committed,
so a rolled-back move is never counted. With no observer a call is one
truth test of an empty list; with one, a few method calls per move.

Observers run on the writer's thread, after the commit and before the
answer: they must be cheap and must not raise (an exception is logged and
dropped, for a counter must never fail a move that is already stored).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from service.model.phases import PhaseTransition, RunPhase

log = logging.getLogger("rok.observers")


@dataclass(frozen=True)
class Verdict:
    """A governance check recorded in a transaction."""

    passed: bool
    status: str
    """The reconciliation's status (ReconciliationStatus: COMPLETE, INCOMPLETE, ...)."""
    evidence_lag_s: float | None
    """Seconds from the end of execution to the last ack the check saw (0 when every
    ack came before the end); None when the check saw no ack."""


@dataclass(frozen=True)
class Committed:
    """What one committed transaction on one run did."""

    run_id: str
    tenant_id: str | None
    moves: tuple[PhaseTransition, ...]
    verdict: Verdict | None


class StoreObserver:
    """Override what you count; every method is called after the commit it reports."""

    def run_created(self, run_id: str, tenant_id: str | None) -> None:
        """A run and its contract were written (not for an idempotent replay)."""

    def committed(self, change: Committed) -> None:
        """A transaction on one run committed (moves, an attempt entry, a verdict, acks)."""

    def claimed(self, run_id: str | None, tenant_id: str | None) -> None:
        """A claim answered a run (`run_id`), or found the queue empty (None)."""

    def check_waited(self, seconds: float) -> None:
        """A governance check waited this long for the domains' acks before judging."""

    def swept(self, actions: Mapping[str, int]) -> None:
        """One sweeper tick acted: how many runs each of its actions took (`released`,
        `failed_worker_lost`, `failed_stale`, and the run-control verdicts)."""

    def webhook_delivered(self, outcome: str) -> None:
        """One webhook delivery attempt ended: `delivered` or `failed`."""


class Observers(StoreObserver):
    """The observers of one store, called in the order they were added."""

    def __init__(self) -> None:
        self._observers: list[StoreObserver] = []

    def __bool__(self) -> bool:
        return bool(self._observers)

    def add(self, observer: StoreObserver) -> None:
        self._observers.append(observer)

    def remove(self, observer: StoreObserver) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def run_created(self, run_id: str, tenant_id: str | None) -> None:
        for observer in self._observers:
            _safely(observer.run_created, run_id, tenant_id)

    def committed(self, change: Committed) -> None:
        for observer in self._observers:
            _safely(observer.committed, change)

    def claimed(self, run_id: str | None, tenant_id: str | None) -> None:
        for observer in self._observers:
            _safely(observer.claimed, run_id, tenant_id)

    def check_waited(self, seconds: float) -> None:
        for observer in self._observers:
            _safely(observer.check_waited, seconds)

    def swept(self, actions: Mapping[str, int]) -> None:
        for observer in self._observers:
            _safely(observer.swept, actions)

    def webhook_delivered(self, outcome: str) -> None:
        for observer in self._observers:
            _safely(observer.webhook_delivered, outcome)


def evidence_lag(executed_at: datetime | None, ack_times: list[datetime]) -> float | None:
    """Seconds from the end of execution to the last ack (0 if all came before); None
    without an ack or without a recorded end of execution."""
    if executed_at is None or not ack_times:
        return None
    return max(0.0, (max(ack_times) - executed_at).total_seconds())


EXECUTION_ENDED = (RunPhase.EXECUTING, RunPhase.GOVERNANCE_CHECK)
"""The move that ends execution (from, to): the start of the evidence lag."""


def _safely(call: Callable[..., None], *args: object) -> None:
    try:
        call(*args)
    except Exception:
        log.exception("an observer failed; the write it reports is committed all the same")
