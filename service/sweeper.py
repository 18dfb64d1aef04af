"""The liveness sweeper: no run is lost when a worker dies, none stays stuck silently.

`tick(now)` is one pass, with the time passed in, so tests drive it without
sleeping; `run_forever` calls it every ROK_SWEEP_INTERVAL_MS. On PostgreSQL a
session advisory lock makes one replica sweep at a time (the others skip the
tick); on SQLite there is one process writing anyway.

Per tick:
- a run whose lease expired (its worker stopped heartbeating) is released
  for another attempt when it has attempts left, else failed: "worker lost";
- a live run whose finalize_run deadline passed is failed as stale, with an
  incident, so its reconciliation says STALE and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from service.authority import Authority
from service.errors import RokError
from service.store.sweeps import SweepStore

log = logging.getLogger("rok.sweeper")


@dataclass
class SweepReport:
    released: list[str] = field(default_factory=list)
    failed_worker_lost: list[str] = field(default_factory=list)
    failed_stale: list[str] = field(default_factory=list)
    skipped: bool = False

    @property
    def acted(self) -> int:
        return len(self.released) + len(self.failed_worker_lost) + len(self.failed_stale)


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
        observers = self.authority.store.observers
        if report.acted and observers:
            released, lost = len(report.released), len(report.failed_worker_lost)
            observers.swept(released, lost, len(report.failed_stale))
        return report

    def _sweep_expired_leases(self, now: datetime, report: SweepReport) -> None:
        for run_id, worker_id, expires_at in self.reads.expired_leases(now):
            why = f"worker lost: lease of worker {worker_id} expired at {expires_at.isoformat()}"
            kernel = self.authority.kernel(run_id, now=now)
            try:
                record = kernel.load()
                lease = record.row.lease
                if lease is None or lease.expires_at > now:
                    continue  # renewed or finished since we looked
                if record.row.attempt < record.row.max_attempts:
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
                        "sweeper: released %d, failed %d (worker lost), %d (stale)",
                        len(report.released),
                        len(report.failed_worker_lost),
                        len(report.failed_stale),
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
