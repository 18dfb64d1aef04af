"""Reading runs: the prebuilt statements, row mapping, and children loaded without N+1.

Shared by the run store, the lease store and every transaction: a run is
always read the same way, whichever path reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, CursorResult, Select, Table, bindparam, select
from sqlalchemy.sql.elements import BindParameter

from service.errors import RunNotFound
from service.model.audit import (
    ORCHESTRATOR_DOMAIN,
    AuditExpectation,
    DomainAck,
    expectation_deadline,
)
from service.model.phases import PhaseTransition, RunPhase
from service.store.records import (
    HistoryEntry,
    Lease,
    RunControl,
    RunRecord,
    RunRow,
)
from service.store.tables import acks, expectations, runs, transitions


def load_record(conn: Connection, run_id: str) -> RunRecord:
    """One run with its children, read on `conn` (inside the caller's transaction)."""
    found = conn.execute(SELECT_RUN, {"run_id": run_id}).first()
    if found is None:
        raise RunNotFound(run_id)
    return load_records(conn, [row_from_mapping(found._mapping)])[0]


_ROW_FIELDS = (
    "id",
    "tenant_id",
    "handler",
    "input",
    "attempt",
    "max_attempts",
    "priority",
    "run_timeout_ms",
    "error",
    "execution_success",
    "governance_passed",
    "governance_checked_at",
    "governance_reconciliation",
    "clock_started_at",
    "finalize_deadline",
    "history_length",
    "created_at",
    "updated_at",
    "created_by",
    "traceparent",
    "chain_length",
    "chain_head",
    "concurrency_keys",
)


def row_from_mapping(m: Any) -> RunRow:
    lease = None
    if m["lease_token"] is not None:
        lease = Lease(m["lease_worker_id"], m["lease_token"], m["lease_expires_at"])
    return RunRow(
        phase=RunPhase(m["phase"]),
        lease=lease,
        control=RunControl.from_columns(m),
        **{name: m[name] for name in _ROW_FIELDS},
    )


def row_values(row: RunRow) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in _ROW_FIELDS}
    values["phase"] = row.phase.value
    values["lease_worker_id"] = row.lease.worker_id if row.lease else None
    values["lease_token"] = row.lease.token if row.lease else None
    values["lease_expires_at"] = row.lease.expires_at if row.lease else None
    values.update(row.control.columns())
    return values


def load_records(conn: Connection, rows: Sequence[RunRow]) -> list[RunRecord]:
    """Children of many runs in three queries, whatever the page size (no N+1)."""
    if not rows:
        return []
    ids = [r.id for r in rows]
    history = _load_history(conn, ids)
    contract = load_expectations(conn, rows)
    recorded = load_acks(conn, ids)
    return [RunRecord(r, history[r.id], contract[r.id], recorded[r.id]) for r in rows]


# The statements for one run, built once. Building a select and computing its
# cache key cost more CPU than SQLite takes to run it, on every request
# (profiled under `rok bench`); a page of runs uses the IN forms below.
_RUN_ID: BindParameter[str] = bindparam("run_id")
SELECT_RUN = select(runs).where(runs.c.id == _RUN_ID)
_SELECT_HISTORY = (
    select(transitions).where(transitions.c.run_id == _RUN_ID).order_by(transitions.c.seq)
)
_SELECT_EXPECTATIONS = (
    select(expectations).where(expectations.c.run_id == _RUN_ID).order_by(expectations.c.position)
)
_SELECT_ACKS = select(acks).where(acks.c.run_id == _RUN_ID).order_by(acks.c.id)
# what a waiting governance check reads, each time it is woken
SELECT_PHASE_AND_TENANT = select(runs.c.phase, runs.c.tenant_id, runs.c.governance_passed).where(
    runs.c.id == _RUN_ID
)
SELECT_DOMAIN_EXPECTATIONS = select(expectations.c.domain, expectations.c.action).where(
    expectations.c.run_id == _RUN_ID, expectations.c.domain != ORCHESTRATOR_DOMAIN
)
SELECT_TIMELY_ACKS = select(acks.c.domain, acks.c.action).where(
    acks.c.run_id == _RUN_ID, acks.c.late.is_(False)
)


def _children(
    conn: Connection, one_run: Select[Any], table: Table, order: str, ids: list[str]
) -> CursorResult[Any]:
    """Rows of a child table for `ids`: the prebuilt statement for one run, else IN."""
    if len(ids) == 1:
        return conn.execute(one_run, {"run_id": ids[0]})
    query = select(table).where(table.c.run_id.in_(ids)).order_by(table.c.run_id, table.c[order])
    return conn.execute(query)


def _load_history(conn: Connection, ids: list[str]) -> dict[str, list[HistoryEntry]]:
    out: dict[str, list[HistoryEntry]] = {i: [] for i in ids}
    for t in _children(conn, _SELECT_HISTORY, transitions, "seq", ids):
        entry = PhaseTransition(
            RunPhase(t.from_phase), RunPhase(t.to_phase), t.at, t.reason, t.details or {}
        )
        out[t.run_id].append(HistoryEntry(entry, t.attempt, t.actor))
    return out


def load_expectations(
    conn: Connection, rows: Sequence[RunRow]
) -> dict[str, list[AuditExpectation]]:
    started = {r.id: r.clock_started_at for r in rows}
    out: dict[str, list[AuditExpectation]] = {r.id: [] for r in rows}
    for e in _children(conn, _SELECT_EXPECTATIONS, expectations, "position", list(started)):
        deadline = expectation_deadline(started[e.run_id], e.deadline_ms)
        out[e.run_id].append(
            AuditExpectation(e.run_id, e.domain, e.action, e.deadline_ms, deadline)
        )
    return out


def load_acks(conn: Connection, ids: list[str]) -> dict[str, list[DomainAck]]:
    out: dict[str, list[DomainAck]] = {i: [] for i in ids}
    for a in _children(conn, _SELECT_ACKS, acks, "id", ids):
        out[a.run_id].append(
            DomainAck(
                a.run_id, a.domain, a.action, a.result_id, a.error, a.at, a.late, a.details, a.actor
            )
        )
    return out
