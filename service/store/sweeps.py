"""What the liveness sweeper reads: expired leases and passed deadlines, live runs only.

Each query reads a partial index (ix_runs_lease_expiry, ix_runs_live_deadline,
and the run-control deadlines of migration 0008),
so a tick costs what is overdue, not what the deployment has kept
(tests/sweeper check the plans on both databases).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, select, text

from service.model.phases import RunPhase
from service.store.database import Database
from service.store.dialects import SWEEPER_LOCK_KEY
from service.store.tables import (
    APPROVAL_PENDING,
    CANCEL_PENDING,
    LIVE_RUN,
    QUEUED_WITH_DEADLINE,
    runs,
)

SWEEP_BATCH = 200


class ExpiredLease(NamedTuple):
    run_id: str
    worker_id: str
    expires_at: datetime


class PassedDeadline(NamedTuple):
    run_id: str
    phase: RunPhase
    deadline: datetime


def expired_leases_query(now: datetime) -> Select[Any]:
    """Leased runs whose lease ran out, oldest first (reads ix_runs_lease_expiry)."""
    return (
        select(runs.c.id, runs.c.lease_worker_id, runs.c.lease_expires_at)
        .where(runs.c.lease_expires_at.is_not(None), runs.c.lease_expires_at <= now)
        .order_by(runs.c.lease_expires_at)
        .limit(SWEEP_BATCH)
    )


def passed_deadlines_query(now: datetime) -> Select[Any]:
    """Live runs past their finalize_run deadline (reads ix_runs_live_deadline).

    The live condition is the index's own text: with `phase NOT IN (?, ?)`
    SQLite cannot prove the index applies and scans every finished run, each
    tick, which grows with the history the deployment keeps.
    """
    return (
        select(runs.c.id, runs.c.phase, runs.c.finalize_deadline)
        .where(
            text(LIVE_RUN),
            runs.c.finalize_deadline.is_not(None),
            runs.c.finalize_deadline <= now,
        )
        .order_by(runs.c.finalize_deadline)
        .limit(SWEEP_BATCH)
    )


def _overdue(column: Any, index_condition: str, before: datetime) -> Select[Any]:
    """Run ids whose `column` is at or before `before`, through the partial index whose
    condition is written here as in the index (as for passed_deadlines_query)."""
    return (
        select(runs.c.id)
        .where(text(index_condition), column <= before)
        .order_by(column)
        .limit(SWEEP_BATCH)
    )


def unstarted_query(now: datetime) -> Select[Any]:
    """Runs still CREATED past their queue_deadline (reads ix_runs_queue_deadline)."""
    return _overdue(runs.c.queue_deadline, QUEUED_WITH_DEADLINE, now)


def expired_approvals_query(now: datetime) -> Select[Any]:
    """Runs whose approval is still pending past its deadline (ix_runs_approval_deadline)."""
    return _overdue(runs.c.approval_deadline, APPROVAL_PENDING, now)


def overdue_cancellations_query(asked_before: datetime) -> Select[Any]:
    """Live runs with a cancellation asked for before `asked_before` (ix_runs_cancel_requested)."""
    return _overdue(runs.c.cancel_requested_at, CANCEL_PENDING, asked_before)


class SweepStore:
    """The sweeper's reads, and its election among replicas."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def elected(self) -> AbstractContextManager[bool]:
        """True, while it is held, on the one replica that sweeps now (always on SQLite)."""
        return self.db.dialect.elected(self.db.engine, SWEEPER_LOCK_KEY)

    def expired_leases(self, now: datetime) -> list[ExpiredLease]:
        with self.db.read() as conn:
            return [ExpiredLease(*r) for r in conn.execute(expired_leases_query(now))]

    def passed_deadlines(self, now: datetime) -> list[PassedDeadline]:
        with self.db.read() as conn:
            return [
                PassedDeadline(r.id, RunPhase(r.phase), r.finalize_deadline)
                for r in conn.execute(passed_deadlines_query(now))
            ]

    def overdue(self, query: Select[Any]) -> list[str]:
        """The run ids one of the run-control queries above finds."""
        with self.db.read() as conn:
            return [str(r.id) for r in conn.execute(query)]
