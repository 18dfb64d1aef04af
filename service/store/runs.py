"""The run repository: creation with its contract, one transaction per move, reads.

Guarantees (each held by the database, not only by the Python above it):
- A run and its contract are written in one transaction (`create`).
- `transaction` locks the run's row for the whole block (FOR UPDATE on
  PostgreSQL, the file's write lock on SQLite); what the block wrote commits
  together or not at all, and waiters are woken only after the commit.
- Moves inside it are checked against the phase table (service.store.transaction).
- Reads (`get`, `list`) see one consistent snapshot of a run and its children.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from service.config import Settings
from service.errors import IdempotencyConflict, RunAlreadyExists, RunNotFound
from service.model.phases import RunPhase
from service.store.chain import history_key_for, seal_genesis
from service.store.cursors import encode_cursor, page_query
from service.store.database import Database
from service.store.limits import queue_run
from service.store.observers import Observers
from service.store.owed import record_owed
from service.store.records import NewRun, RunFilter, RunRecord, RunRow
from service.store.rows import (
    SELECT_DOMAIN_EXPECTATIONS,
    SELECT_PHASE_AND_TENANT,
    SELECT_RUN,
    SELECT_TIMELY_ACKS,
    load_record,
    load_records,
    row_from_mapping,
)
from service.store.signals import CLAIMABLE, Signals
from service.store.tables import expectations, runs
from service.store.transaction import RunTransaction
from service.store.verify import ChainReport, verify_every_run, verify_run

NOTIFY_CHANNEL = "rok_signals"

__all__ = ["NOTIFY_CHANNEL", "NewRun", "RunFilter", "RunStore", "encode_cursor", "notice"]


# Built once: building a statement per call cost more CPU than running it (py-spy, W2)
_RUN_EXISTS = select(runs.c.id).where(runs.c.id == bindparam("run_id"))
_INSERT_RUN = insert(runs)
_INSERT_EXPECTATIONS = insert(expectations)


def notice(origin: str, key: str) -> str:
    """A NOTIFY payload: who committed (so it can skip its own echo) and what changed."""
    return f"{origin} {key}"


def read_notice(payload: str) -> tuple[str, str]:
    """(origin, key) of a payload written by `notice`."""
    origin, _, key = payload.partition(" ")
    return origin, key


class RunStore:
    """Runs, their history, contract and acks, on one Database."""

    def __init__(
        self,
        db: Database,
        signals: Signals | None = None,
        history_key: bytes | None = None,
        record_events: bool = False,
    ) -> None:
        self.db = db
        self.record_events = record_events
        """Write alerts to the outbox (service.store.outbox): only with webhooks to send them."""
        self.signals = signals or Signals()
        # None: the key the service itself resolves (ROK_HISTORY_KEY, else the key
        # file), so a store opened by a script or a test seals as the service does
        if history_key is None:
            history_key = history_key_for(Settings.from_env())
        self.history_key = history_key
        """Seals every transition and ack (service.store.chain); never written to the database."""
        self.observers = Observers()
        """Told of what each write did once it committed (the API's metrics)."""
        # prebuilt once: building a statement per move costs more than running it
        self._select_run_locked = db.dialect.lock_run(SELECT_RUN)

    def _publish(self, conn: Connection, keys: set[str]) -> None:
        """Inside the transaction: tell other replicas (delivered on commit)."""
        payloads = [notice(self.signals.origin, key) for key in sorted(keys)]
        self.db.dialect.publish(conn, NOTIFY_CHANNEL, payloads)

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
                if conn.execute(_RUN_EXISTS, {"run_id": new.id}).first():
                    raise RunAlreadyExists(new.id)
                declared = _new_run_values(new)
                contract = [
                    {"run_id": new.id, "domain": d, "action": a, "deadline_ms": ms, "position": i}
                    for i, (d, a, ms) in enumerate(new.contract)
                ]
                # the chain starts from the seal of T0: the declaration and its contract
                declared["chain_head"] = seal_genesis(self.history_key, declared, contract)
                conn.execute(_INSERT_RUN, declared)
                if contract:
                    conn.execute(_INSERT_EXPECTATIONS, contract)
                # the owed feed's index, in the same transaction (service.store.owed)
                queue_run(conn, new.id, new.tenant_id, new.concurrency_keys)
                owed = record_owed(conn, declared, [(d, a) for d, a, _ in new.contract])
                keys = {CLAIMABLE} | owed
                self._publish(conn, keys)
            self._wake(keys)
            if self.observers:
                self.observers.run_created(new.id, new.tenant_id)
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
    def transaction(
        self, run_id: str, clock: Callable[[], datetime], actor: str | None = None
    ) -> Iterator[RunTransaction]:
        """Lock the run's row, load it, and commit what the block did (or nothing).

        The clock is read once the lock is held, so the times written follow
        the order in which writers commit. `actor` is recorded on every entry.
        """
        with self.db.write() as conn:
            found = conn.execute(self._select_run_locked, {"run_id": run_id}).first()
            if found is None:
                raise RunNotFound(run_id)
            row = row_from_mapping(found._mapping)
            observed = bool(self.observers)
            tx = RunTransaction(
                conn,
                row,
                clock(),
                actor,
                history_key=self.history_key,
                record_events=self.record_events,
                observed=observed,
            )
            yield tx
            tx.write_chain_head()
            self._publish(conn, tx.notified)
        self._wake(tx.notified)
        if observed:
            self.observers.committed(tx.committed())

    # -- reads ------------------------------------------------------------

    def verify(self, run_id: str) -> ChainReport:
        """Recompute the run's sealed history (service.store.verify); RunNotFound if none."""
        with self.db.read() as conn:
            report = verify_run(conn, self.history_key, run_id)
        if report is None:
            raise RunNotFound(run_id)
        return report

    def verify_all(self) -> Iterator[ChainReport]:
        """Reports of every run, read a page of runs at a time."""
        return verify_every_run(self.db, self.history_key)

    def get(self, run_id: str) -> RunRecord:
        with self.db.read() as conn:
            return load_record(conn, run_id)

    def get_row(self, run_id: str) -> RunRow:
        """The run's row alone (no history, contract or acks); RunNotFound if none."""
        with self.db.read() as conn:
            found = conn.execute(SELECT_RUN, {"run_id": run_id}).first()
        if found is None:
            raise RunNotFound(run_id)
        return row_from_mapping(found._mapping)

    def governance_wait_state(
        self, run_id: str, tenant_id: str | None = None
    ) -> tuple[RunPhase, list[tuple[str, str]]]:
        """The run's phase and the domain expectations still waiting for an ack.

        With `tenant_id`, a run of another tenant does not exist (RunNotFound):
        its phase must not reach that tenant's caller.
        """
        with self.db.read() as conn:
            params = {"run_id": run_id}
            run = conn.execute(SELECT_PHASE_AND_TENANT, params).first()
            if run is None or tenant_id not in (None, run.tenant_id):
                raise RunNotFound(run_id)
            phase = run.phase
            if run.governance_passed is not None:  # the verdict is recorded: it never changes
                return RunPhase(phase), []
            expected = conn.execute(SELECT_DOMAIN_EXPECTATIONS, params).all()
            acked = conn.execute(SELECT_TIMELY_ACKS, params).all()
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
        query = page_query(select(runs), filters, limit, cursor)
        with self.db.read() as conn:
            rows = [row_from_mapping(r._mapping) for r in conn.execute(query)]
            page, more = rows[:limit], len(rows) > limit
            records = load_records(conn, page)
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
        return records, next_cursor


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
        "created_by": new.created_by,
        "concurrency_keys": list(new.concurrency_keys),
        # a run waiting for its approval is off the claim queue until approved
        "available": new.control.approval_state != "pending",
        **new.control.columns(),
        "traceparent": new.traceparent,
    }


def _find_by_scope(conn: Connection, scope: str) -> Any:
    return conn.execute(
        select(runs.c.id, runs.c.request_fingerprint).where(runs.c.idempotency_scope == scope)
    ).first()


def _replay(existing: Any, new: NewRun) -> str:
    if existing.request_fingerprint != new.request_fingerprint:
        # the tenant part never holds \x1f (service.kernel.spec.idempotency_scope)
        key = (new.idempotency_scope or "").split("\x1f", 1)[-1]
        raise IdempotencyConflict(key)
    return str(existing.id)
