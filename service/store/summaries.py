"""Run summaries for `GET /runs`: a page of runs as a list shows them.

A summary is a run's identity, where it stands and the status of its
reconciliation; `GET /runs/{id}` has the whole run. A page reads only the
`runs` columns a summary needs (no input, no history), then the contract and
the acks of the whole page, one query each whatever the page size, and of
those only the columns the reconciliation's status depends on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from service.model.audit import (
    AuditExpectation,
    DomainAck,
    ReconciliationStatus,
    expectation_deadline,
    reconcile,
)
from service.model.phases import TERMINAL_PHASES, RunPhase
from service.store.cursors import encode_cursor, page_query
from service.store.database import Database
from service.store.records import RunFilter
from service.store.tables import acks, expectations, runs


@dataclass
class RunSummary:
    """One run of a page, with what its reconciliation's status needs."""

    id: str
    tenant_id: str | None
    handler: str | None
    phase: RunPhase
    attempt: int
    created_at: datetime
    updated_at: datetime
    error: str | None
    checked: bool
    """A governance verdict is recorded."""
    clock_started_at: datetime | None
    expectations: list[AuditExpectation] = field(default_factory=list)
    acks: list[DomainAck] = field(default_factory=list)

    def reconciliation_status(self, now: datetime) -> ReconciliationStatus:
        """The status of the run's reconciliation as of `now` (as GET /runs/{id} shows it)."""
        result = reconcile(
            self.expectations,
            self.acks,
            now,
            check_ended=self.checked,
            terminal=self.phase in TERMINAL_PHASES,
        )
        return result.status


_SUMMARY_COLUMNS = (
    runs.c.id,
    runs.c.tenant_id,
    runs.c.handler,
    runs.c.phase,
    runs.c.attempt,
    runs.c.created_at,
    runs.c.updated_at,
    runs.c.error,
    runs.c.governance_passed,
    runs.c.clock_started_at,
)


def list_summaries(
    db: Database, filters: RunFilter, limit: int, cursor: str | None
) -> tuple[list[RunSummary], str | None]:
    """Newest first; `cursor` continues after the last run of the previous page.

    InvalidRequest for a cursor this service did not give out.
    """
    query = page_query(select(*_SUMMARY_COLUMNS), filters, limit, cursor)
    with db.read() as conn:
        found = [_summary(r._mapping) for r in conn.execute(query)]
        page, more = found[:limit], len(found) > limit
        _load_evidence(conn, page)
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
    return page, next_cursor


def _summary(m: Any) -> RunSummary:
    return RunSummary(
        id=m["id"],
        tenant_id=m["tenant_id"],
        handler=m["handler"],
        phase=RunPhase(m["phase"]),
        attempt=m["attempt"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        error=m["error"],
        checked=m["governance_passed"] is not None,
        clock_started_at=m["clock_started_at"],
    )


def _load_evidence(conn: Connection, page: Sequence[RunSummary]) -> None:
    """The contract and the acks of every run of the page: two queries, no N+1."""
    if not page:
        return
    by_id = {s.id: s for s in page}
    ids = list(by_id)
    declared = select(
        expectations.c.run_id,
        expectations.c.domain,
        expectations.c.action,
        expectations.c.deadline_ms,
    ).where(expectations.c.run_id.in_(ids))
    for e in conn.execute(declared.order_by(expectations.c.run_id, expectations.c.position)):
        summary = by_id[e.run_id]
        deadline = expectation_deadline(summary.clock_started_at, e.deadline_ms)
        summary.expectations.append(
            AuditExpectation(e.run_id, e.domain, e.action, e.deadline_ms, deadline)
        )
    given = select(
        acks.c.run_id, acks.c.domain, acks.c.action, acks.c.error, acks.c.at, acks.c.late
    ).where(acks.c.run_id.in_(ids))
    for a in conn.execute(given.order_by(acks.c.run_id, acks.c.id)):
        by_id[a.run_id].acks.append(
            DomainAck(a.run_id, a.domain, a.action, None, a.error, a.at, a.late)
        )
