"""What the liveness sweeper reads: expired leases and passed deadlines, live runs only.

Each query reads a partial index (ix_runs_lease_expiry, ix_runs_live_deadline),
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
from service.store.tables import LIVE_RUN, runs

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
