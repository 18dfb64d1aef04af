"""The run repository: creation with its contract, guarded transitions, acks, reads.

Guarantees (each held by the database, not only by the Python above it):
- A run and its contract are written in one transaction (`create`).
- A transition is one guarded UPDATE (`WHERE phase = :expected AND
  history_length = :n`) plus its history row in the same transaction; zero
  rows updated means someone else moved the run first, and nothing is written.
- A history slot (run_id, seq) is unique, and so is a run's finalize_run ack.
- Reads (`get`, `list`) see one consistent snapshot of a run and its children.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    CursorResult,
    Select,
    Table,
    and_,
    bindparam,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import BindParameter

from service.errors import (
    IdempotencyConflict,
    InvalidRequest,
    PhaseTransitionError,
    RunAlreadyExists,
    RunNotFound,
)
from service.model.audit import (
    ORCHESTRATOR_DOMAIN,
    AuditExpectation,
    DomainAck,
    expectation_deadline,
)
from service.model.phases import PhaseTransition, RunPhase
from service.store.database import Database
from service.store.records import HistoryEntry, Lease, RunRecord, RunRow
from service.store.signals import CLAIMABLE, Signals, ack_key
from service.store.tables import acks, expectations, runs, transitions

NOTIFY_CHANNEL = "rok_signals"


def notice(origin: str, key: str) -> str:
    """A NOTIFY payload: who committed (so it can skip its own echo) and what changed."""
    return f"{origin} {key}"


def read_notice(payload: str) -> tuple[str, str]:
    """(origin, key) of a payload written by `notice`."""
    origin, _, key = payload.partition(" ")
    return origin, key


@dataclass(frozen=True)
class NewRun:
    id: str
    tenant_id: str | None
    handler: str | None
    input: Any
    run_timeout_ms: int
    max_attempts: int
    priority: int
    contract: Sequence[tuple[str, str, int | None]]
    idempotency_scope: str | None
    request_fingerprint: str | None
    created_at: datetime


@dataclass(frozen=True)
class RunFilter:
    phase: RunPhase | None = None
    tenant_id: str | None = None
    handler: str | None = None


# Writes on one run, built once (see the note on the prebuilt reads below).
# An UPDATE without .values() sets the columns named by the parameters; the
# match_* parameters are the guard of the WHERE clause.
_UPDATE_RUN = update(runs).where(runs.c.id == bindparam("match_id"))
_MOVE_RUN = update(runs).where(
    runs.c.id == bindparam("match_id"),
    runs.c.phase == bindparam("match_phase"),
    runs.c.history_length == bindparam("match_length"),
)
_INSERT_TRANSITION = insert(transitions)
_INSERT_ACK = insert(acks)


class RunTransaction:
    """One write transaction on one run, the row already locked and loaded."""

    def __init__(self, conn: Connection, row: RunRow, now: datetime) -> None:
        self.conn = conn
        self.row = row
        self.now = now
        self._expectations: list[AuditExpectation] | None = None
        self._acks: list[DomainAck] | None = None
        self.notified: set[str] = set()

    def notify(self, key: str) -> None:
        """Wake waiters on `key` once this transaction commits (and other replicas, on PG)."""
        self.notified.add(key)

    def transition(
        self,
        to_phase: RunPhase,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        **fields: Any,
    ) -> PhaseTransition:
        """Move the run to `to_phase`, append the history entry, set `fields` too."""
        row = self.row
        entry = PhaseTransition(row.phase, to_phase, self.now, reason, dict(details or {}))
        values = {
            "phase": to_phase.value,
            "history_length": row.history_length + 1,
            "updated_at": self.now,
            **fields,
        }
        self._guarded_update(values, to_phase)
        self._append_history(entry, fields.get("attempt", row.attempt))
        self._apply(values)
        return entry

    def record_attempt(self, attempt: int, reason: str, **fields: Any) -> PhaseTransition:
        """Append a history entry that starts a new attempt in the current phase.

        from == to: the run does not move (a retry never goes backwards); the
        entry carries the new attempt number, and later moves carry it too.
        """
        row = self.row
        entry = PhaseTransition(
            row.phase, row.phase, self.now, reason, {"attempt_started": attempt}
        )
        values = {
            "attempt": attempt,
            "history_length": row.history_length + 1,
            "updated_at": self.now,
            **fields,
        }
        self._guarded_update(values, row.phase)
        self._append_history(entry, attempt)
        self._apply(values)
        return entry

    def _guarded_update(self, values: dict[str, Any], to_phase: RunPhase) -> None:
        """UPDATE the run only if it is still as loaded (phase and history length)."""
        row = self.row
        result = self.conn.execute(
            _MOVE_RUN,
            {
                "match_id": row.id,
                "match_phase": row.phase.value,
                "match_length": row.history_length,
                **values,
            },
        )
        if result.rowcount != 1:
            # Only reachable when another writer bypassed the row lock; refuse.
            raise PhaseTransitionError(
                row.id, row.phase, to_phase, "the run was moved concurrently"
            )

    def _append_history(self, entry: PhaseTransition, attempt: int) -> None:
        self.conn.execute(
            _INSERT_TRANSITION,
            {
                "run_id": self.row.id,
                "seq": self.row.history_length + 1,
                "attempt": attempt,
                "from_phase": entry.from_phase.value,
                "to_phase": entry.to_phase.value,
                "at": entry.at,
                "reason": entry.reason,
                "details": entry.details or None,
            },
        )

    def update(self, **fields: Any) -> None:
        """Set columns of the run without a phase move (e.g. the recorded check)."""
        values = {"updated_at": self.now, **fields}
        self.conn.execute(_UPDATE_RUN, {"match_id": self.row.id, **values})
        self._apply(values)

    def add_ack(
        self,
        domain: str,
        action: str,
        result_id: str | None,
        error: str | None,
        late: bool = False,
        details: dict[str, Any] | None = None,
    ) -> DomainAck:
        ack = DomainAck(self.row.id, domain, action, result_id, error, self.now, late, details)
        self.conn.execute(
            _INSERT_ACK,
            {
                "run_id": self.row.id,
                "domain": domain,
                "action": action,
                "result_id": result_id,
                "error": error,
                "at": self.now,
                "late": late,
                "details": details,
            },
        )
        self.notify(ack_key(self.row.id))
        if self._acks is not None:
            self._acks.append(ack)
        return ack

    def record(self) -> RunRecord:
        """The run as this transaction leaves it, read on its own connection."""
        return _load_records(self.conn, [self.row])[0]

    def expectations(self) -> list[AuditExpectation]:
        if self._expectations is None:
            self._expectations = _load_expectations(self.conn, [self.row])[self.row.id]
        return self._expectations

    def acks(self) -> list[DomainAck]:
        if self._acks is None:
            self._acks = _load_acks(self.conn, [self.row.id])[self.row.id]
        return self._acks

    def _apply(self, values: dict[str, Any]) -> None:
        fresh = _row_values(self.row) | values
        self.row = _row_from_mapping(fresh)
        self._expectations = None  # deadlines depend on clock_started_at


class RunStore:
    """Runs, their history, contract and acks, on one Database."""

    def __init__(self, db: Database, signals: Signals | None = None) -> None:
        self.db = db
        self.signals = signals or Signals()

    def _publish(self, conn: Connection, keys: set[str]) -> None:
        """Inside the transaction: NOTIFY other replicas (PostgreSQL delivers on commit)."""
        if self.db.is_postgres:
            for key in keys:
                conn.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": NOTIFY_CHANNEL, "payload": notice(self.signals.origin, key)},
                )

    def _wake(self, keys: set[str]) -> None:
        """After commit: wake this process's waiters."""
        for key in keys:
            self.signals.notify(key)

    # -- creation ---------------------------------------------------------

    def create(self, new: NewRun) -> tuple[str, bool]:
        """Insert the run and its contract; return (run id, whether it was created now).

        The same idempotency scope with the same fingerprint returns the
        existing run; with another fingerprint it raises IdempotencyConflict.
        """
        try:
            with self.db.write() as conn:
                if new.idempotency_scope is not None:
                    existing = _find_by_scope(conn, new.idempotency_scope)
                    if existing is not None:
                        return _replay(existing, new), False
                if conn.execute(select(runs.c.id).where(runs.c.id == new.id)).first():
                    raise RunAlreadyExists(new.id)
                conn.execute(insert(runs).values(**_new_run_values(new)))
                if new.contract:
                    conn.execute(
                        insert(expectations),
                        [
                            {
                                "run_id": new.id,
                                "domain": d,
                                "action": a,
                                "deadline_ms": ms,
                                "position": i,
                            }
                            for i, (d, a, ms) in enumerate(new.contract)
                        ],
                    )
                self._publish(conn, {CLAIMABLE})
            self._wake({CLAIMABLE})
            return new.id, True
        except IntegrityError:
            # Lost a race with a concurrent create of the same key or id.
            with self.db.read() as conn:
                if new.idempotency_scope is not None:
                    existing = _find_by_scope(conn, new.idempotency_scope)
                    if existing is not None:
                        return _replay(existing, new), False
            raise RunAlreadyExists(new.id) from None

    # -- transactions on one run -----------------------------------------

    @contextlib.contextmanager
    def transaction(self, run_id: str, clock: Callable[[], datetime]) -> Iterator[RunTransaction]:
        """Lock the run's row, load it, and commit what the block did (or nothing).

        The clock is read once the lock is held, so the times written follow
        the order in which writers commit.
        """
        with self.db.write() as conn:
            query = _SELECT_RUN_FOR_UPDATE if self.db.is_postgres else _SELECT_RUN
            found = conn.execute(query, {"run_id": run_id}).first()
            if found is None:
                raise RunNotFound(run_id)
            tx = RunTransaction(conn, _row_from_mapping(found._mapping), clock())
            yield tx
            self._publish(conn, tx.notified)
        self._wake(tx.notified)

    # -- reads ------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        with self.db.read() as conn:
            return load_record(conn, run_id)

    def governance_wait_state(self, run_id: str) -> tuple[RunPhase, list[tuple[str, str]]]:
        """The run's phase and the domain expectations still waiting for an ack."""
        with self.db.read() as conn:
            params = {"run_id": run_id}
            phase = conn.execute(_SELECT_PHASE, params).scalar()
            if phase is None:
                raise RunNotFound(run_id)
            expected = conn.execute(_SELECT_DOMAIN_EXPECTATIONS, params).all()
            acked = conn.execute(_SELECT_TIMELY_ACKS, params).all()
        done = {(a.domain, a.action) for a in acked}
        outstanding = sorted((e.domain, e.action) for e in expected)
        return RunPhase(phase), [p for p in outstanding if p not in done]

    def exists(self, run_id: str) -> bool:
        with self.db.read() as conn:
            return conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is not None

    def list(
        self, filters: RunFilter, limit: int, cursor: str | None
    ) -> tuple[list[RunRecord], str | None]:
        """Newest first; `cursor` continues after the last run of the previous page."""
        query = select(runs)
        if filters.phase is not None:
            query = query.where(runs.c.phase == filters.phase.value)
        if filters.tenant_id is not None:
            query = query.where(runs.c.tenant_id == filters.tenant_id)
        if filters.handler is not None:
            query = query.where(runs.c.handler == filters.handler)
        if cursor is not None:
            after_at, after_id = decode_cursor(cursor)
            query = query.where(
                or_(
                    runs.c.created_at < after_at,
                    and_(runs.c.created_at == after_at, runs.c.id < after_id),
                )
            )
        query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit + 1)
        with self.db.read() as conn:
            rows = [_row_from_mapping(r._mapping) for r in conn.execute(query)]
            page, more = rows[:limit], len(rows) > limit
            records = _load_records(conn, page)
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
        return records, next_cursor


def load_record(conn: Connection, run_id: str) -> RunRecord:
    """One run with its children, read on `conn` (inside the caller's transaction)."""
    found = conn.execute(_SELECT_RUN, {"run_id": run_id}).first()
    if found is None:
        raise RunNotFound(run_id)
    return _load_records(conn, [_row_from_mapping(found._mapping)])[0]


# -- cursors ---------------------------------------------------------------


def encode_cursor(created_at: datetime, run_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), run_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, run_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None or not isinstance(run_id, str):
            raise ValueError
        return parsed, run_id
    except (ValueError, TypeError, json.JSONDecodeError):
        raise InvalidRequest(f"cursor {cursor!r} is not a cursor this service returned") from None


# -- row mapping -------------------------------------------------------------


def _new_run_values(new: NewRun) -> dict[str, Any]:
    return {
        "id": new.id,
        "tenant_id": new.tenant_id,
        "handler": new.handler,
        "input": new.input,
        "phase": RunPhase.CREATED.value,
        "attempt": 1,
        "max_attempts": new.max_attempts,
        "priority": new.priority,
        "run_timeout_ms": new.run_timeout_ms,
        "idempotency_scope": new.idempotency_scope,
        "request_fingerprint": new.request_fingerprint,
        "history_length": 0,
        "created_at": new.created_at,
        "updated_at": new.created_at,
    }


def _find_by_scope(conn: Connection, scope: str) -> Any:
    return conn.execute(
        select(runs.c.id, runs.c.request_fingerprint).where(runs.c.idempotency_scope == scope)
    ).first()


def _replay(existing: Any, new: NewRun) -> str:
    if existing.request_fingerprint != new.request_fingerprint:
        key = (new.idempotency_scope or "").split("\x1f", 1)[-1]
        raise IdempotencyConflict(key)
    return str(existing.id)


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
)


def _row_from_mapping(m: Any) -> RunRow:
    lease = None
    if m["lease_token"] is not None:
        lease = Lease(m["lease_worker_id"], m["lease_token"], m["lease_expires_at"])
    return RunRow(
        phase=RunPhase(m["phase"]),
        lease=lease,
        **{name: m[name] for name in _ROW_FIELDS},
    )


def _row_values(row: RunRow) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in _ROW_FIELDS}
    values["phase"] = row.phase.value
    values["lease_worker_id"] = row.lease.worker_id if row.lease else None
    values["lease_token"] = row.lease.token if row.lease else None
    values["lease_expires_at"] = row.lease.expires_at if row.lease else None
    return values


def _load_records(conn: Connection, rows: Sequence[RunRow]) -> list[RunRecord]:
    """Children of many runs in three queries, whatever the page size (no N+1)."""
    if not rows:
        return []
    ids = [r.id for r in rows]
    history = _load_history(conn, ids)
    contract = _load_expectations(conn, rows)
    recorded = _load_acks(conn, ids)
    return [RunRecord(r, history[r.id], contract[r.id], recorded[r.id]) for r in rows]


# The statements for one run, built once. Building a select and computing its
# cache key cost more CPU than SQLite takes to run it, on every request
# (profiled under `rok bench`); a page of runs uses the IN forms below.
_RUN_ID: BindParameter[str] = bindparam("run_id")
_SELECT_RUN = select(runs).where(runs.c.id == _RUN_ID)
_SELECT_RUN_FOR_UPDATE = _SELECT_RUN.with_for_update()
_SELECT_HISTORY = (
    select(transitions).where(transitions.c.run_id == _RUN_ID).order_by(transitions.c.seq)
)
_SELECT_EXPECTATIONS = (
    select(expectations).where(expectations.c.run_id == _RUN_ID).order_by(expectations.c.position)
)
_SELECT_ACKS = select(acks).where(acks.c.run_id == _RUN_ID).order_by(acks.c.id)
# what a waiting governance check reads, each time it is woken
_SELECT_PHASE = select(runs.c.phase).where(runs.c.id == _RUN_ID)
_SELECT_DOMAIN_EXPECTATIONS = select(expectations.c.domain, expectations.c.action).where(
    expectations.c.run_id == _RUN_ID, expectations.c.domain != ORCHESTRATOR_DOMAIN
)
_SELECT_TIMELY_ACKS = select(acks.c.domain, acks.c.action).where(
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
        out[t.run_id].append(HistoryEntry(entry, t.attempt))
    return out


def _load_expectations(
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


def _load_acks(conn: Connection, ids: list[str]) -> dict[str, list[DomainAck]]:
    out: dict[str, list[DomainAck]] = {i: [] for i in ids}
    for a in _children(conn, _SELECT_ACKS, acks, "id", ids):
        out[a.run_id].append(
            DomainAck(a.run_id, a.domain, a.action, a.result_id, a.error, a.at, a.late, a.details)
        )
    return out
