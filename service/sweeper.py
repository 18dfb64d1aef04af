"""The liveness sweeper: no run is lost when a worker dies, none stays stuck silently.

`tick(now)` is one pass, with the time passed in, so tests drive it without
sleeping; `run_forever` calls it every ROK_SWEEP_INTERVAL_MS. On PostgreSQL a
session advisory lock makes one replica sweep at a time (the others skip the
tick); on SQLite there is one process writing anyway.

Per tick:
- a run whose lease expired (its worker stopped heartbeating) is released
  for another attempt when it has attempts left, else failed: "worker lost";
- a live run whose finalize_run deadline passed is failed as stale, with an
  incident, so its reconciliation says STALE and why;
- run control (DESIGN section 11): a run still CREATED past its queue
  timeout, a run whose approval was not decided in time, and a run whose
  worker did not carry out a cancellation within ROK_CANCEL_GRACE_MS are failed,
  each with its reason. A run whose lease expired after a cancellation was asked
  is failed, not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.authority import Authority
from service.errors import RokError
from service.kernel import RunOrchestrationKernel
from service.store.sweeps import (
    SweepStore,
    expired_approvals_query,
    overdue_cancellations_query,
    unstarted_query,
)

log = logging.getLogger("rok.sweeper")


@dataclass
class SweepReport:
    released: list[str] = field(default_factory=list)
    failed_worker_lost: list[str] = field(default_factory=list)
    failed_stale: list[str] = field(default_factory=list)
    failed_unstarted: list[str] = field(default_factory=list)
    failed_approval_expired: list[str] = field(default_factory=list)
    failed_cancelled: list[str] = field(default_factory=list)
    skipped: bool = False

    def counts(self) -> dict[str, int]:
        """How many runs each action took this tick (the metrics' `action` labels)."""
        return {
            "released": len(self.released),
            "failed_worker_lost": len(self.failed_worker_lost),
            "failed_stale": len(self.failed_stale),
            "failed_unstarted": len(self.failed_unstarted),
            "failed_approval_expired": len(self.failed_approval_expired),
            "failed_cancelled": len(self.failed_cancelled),
        }

    @property
    def acted(self) -> int:
        return sum(self.counts().values())


class Sweeper:
    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self.reads = SweepStore(authority.database)

    def tick(self, now: datetime) -> SweepReport:
        report = SweepReport()
        with self.reads.elected() as elected:
            if not elected:
                report.skipped = True
                return report
            self._sweep_expired_leases(now, report)
            self._sweep_passed_deadlines(now, report)
            self._sweep_run_control(now, report)
        observers = self.authority.store.observers
        if report.acted and observers:
            observers.swept(report.counts())
        return report

    def _sweep_run_control(self, now: datetime, report: SweepReport) -> None:
        grace_ms = self.authority.settings.cancel_grace_ms
        verdicts: list[tuple[Any, list[str], Callable[[RunOrchestrationKernel], object]]] = [
            (unstarted_query(now), report.failed_unstarted, lambda k: k.fail_unstarted()),
            (
                expired_approvals_query(now),
                report.failed_approval_expired,
                lambda k: k.expire_approval(),
            ),
            (
                overdue_cancellations_query(now - timedelta(milliseconds=grace_ms)),
                report.failed_cancelled,
                lambda k: k.fail_cancel_overdue(grace_ms),
            ),
        ]
        for query, done, verdict in verdicts:
            for run_id in self.reads.overdue(query):
                try:
                    verdict(self.authority.kernel(run_id, now=now))
                    done.append(run_id)
                except RokError as exc:  # decided, started or finished since we looked
                    log.info("sweeper skipped run %s: %s", run_id, exc)

    def _sweep_expired_leases(self, now: datetime, report: SweepReport) -> None:
        for run_id, worker_id, expires_at in self.reads.expired_leases(now):
            why = f"worker lost: lease of worker {worker_id} expired at {expires_at.isoformat()}"
            kernel = self.authority.kernel(run_id, now=now)
            try:
                record = kernel.load()
                lease = record.row.lease
                if lease is None or lease.expires_at > now:
                    continue  # renewed or finished since we looked
                if record.row.control.cancel_requested:
                    kernel.fail_cancel_overdue(self.authority.settings.cancel_grace_ms)
                    report.failed_cancelled.append(run_id)
                elif record.row.attempt < record.row.max_attempts:
                    kernel.release_for_retry(why)
                    report.released.append(run_id)
                else:
                    kernel.fail(why)
                    report.failed_worker_lost.append(run_id)
            except RokError as exc:  # the run moved on between our read and our write
                log.info("sweeper skipped run %s: %s", run_id, exc, extra={"run_id": run_id})

    def _sweep_passed_deadlines(self, now: datetime, report: SweepReport) -> None:
        for run_id, phase, deadline in self.reads.passed_deadlines(now):
            why = (
                f"stale: finalize_run deadline {deadline.isoformat()} passed "
                f"while the run was in {phase}"
            )
            try:
                self.authority.kernel(run_id, now=now).fail_stale(why)
                report.failed_stale.append(run_id)
            except RokError as exc:
                log.info("sweeper skipped run %s: %s", run_id, exc, extra={"run_id": run_id})

    async def run_forever(self) -> None:
        interval = self.authority.settings.sweep_interval_ms / 1000.0
        while True:
            tick = asyncio.ensure_future(asyncio.to_thread(self.tick, self.authority.clock()))
            try:
                report = await asyncio.shield(tick)
                if report.acted:
                    log.warning(
                        "sweeper: released %d, failed %d (worker lost), %d (stale), "
                        "%d (never started), %d (approval expired), %d (cancelled)",
                        len(report.released),
                        len(report.failed_worker_lost),
                        len(report.failed_stale),
                        len(report.failed_unstarted),
                        len(report.failed_approval_expired),
                        len(report.failed_cancelled),
                    )
            except asyncio.CancelledError:
                # A thread cannot be cancelled: let the tick end (and give its
                # connection back) before whoever stopped us closes the database;
                # a connection returned to a disposed pool is never closed.
                with contextlib.suppress(Exception):
                    await tick
                raise
            except Exception:  # a failed tick must not stop liveness for good
                log.exception("sweeper tick failed")
            await asyncio.sleep(interval)
