"""One write transaction on one run: the only way a run's phase is ever written.

Guarantees (each held by the database, not only by the Python above it):
- Every move is checked against VALID_TRANSITIONS here (`transition`), so no
  caller, the kernel included, can persist a move the table forbids. The one
  exception is an attempt entry (`record_attempt`: from == to), which starts
  a new attempt without moving the run.
- A move is one guarded UPDATE (`WHERE phase = :expected AND history_length
  = :n`) plus its history row; zero rows updated means someone else moved the
  run first, and nothing is written.
- A history slot (run_id, seq) is unique, and so is a run's finalize_run ack.
- Every transition and ack is sealed as it is written: its place in the run's
  chain (`chain_seq`) and its HMAC over the previous seal (service.store.chain).
  The run's chain_length/chain_head ride in the move's UPDATE; acks after the
  last move of a transaction add one UPDATE of the run (`write_chain_head`).
- A write that ends the run's lease gives its concurrency slots back, and one
  that puts it back in the queue marks its tenant's lane waiting, in the same
  transaction (`_apply`; service.store.limits): whatever path ends a lease.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from service.errors import PhaseTransitionError
from service.model.audit import AuditExpectation, DomainAck
from service.model.phases import TERMINAL_PHASES, PhaseTransition, RunPhase, check_transition
from service.store.chain import seal_ack, seal_genesis, seal_transition
from service.store.limits import forget_run_keys, give_back, wake_lane
from service.store.records import NO_CHANGES, NO_LEASE, RunChanges, RunRecord, RunRow
from service.store.rows import (
    load_acks,
    load_expectations,
    load_records,
    row_from_mapping,
    row_values,
)
from service.store.signals import ack_key
from service.store.tables import acks, runs, transitions
from service.store.verify import load_contract

# Writes on one run, built once (building a statement costs more CPU than
# SQLite takes to run it). An UPDATE without .values() sets the columns named
# by the parameters; the match_* parameters are the guard of the WHERE clause.
_UPDATE_RUN = update(runs).where(runs.c.id == bindparam("match_id"))
_MOVE_RUN = update(runs).where(
    runs.c.id == bindparam("match_id"),
    runs.c.phase == bindparam("match_phase"),
    runs.c.history_length == bindparam("match_length"),
)
_INSERT_TRANSITION = insert(transitions)
_INSERT_ACK = insert(acks)
_TERMINAL_VALUES = frozenset(phase.value for phase in TERMINAL_PHASES)
_COUNT_ACKS = select(func.count()).select_from(acks).where(acks.c.run_id == bindparam("run_id"))


class RunTransaction:
    """One write transaction on one run, the row already locked and loaded."""

    def __init__(
        self,
        conn: Connection,
        row: RunRow,
        now: datetime,
        actor: str | None = None,
        *,
        history_key: bytes,
    ) -> None:
        self.conn = conn
        self.row = row
        self.now = now
        self.actor = actor
        """Who is writing (an API key's id; None with auth off or for the service itself)."""
        self._history_key = history_key
        self._chain_head_written = True
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
        changes: RunChanges = NO_CHANGES,
    ) -> PhaseTransition:
        """Move the run to `to_phase` (if the table allows it) and append the history entry.

        PhaseTransitionError, and nothing written, for a move VALID_TRANSITIONS forbids.
        A run moved while no worker leases it is driven by hand: the same UPDATE
        takes it off the claim queue, so no claimer can take it from its driver
        (only record_attempt, for a leased run whose worker was lost, puts a run back).
        """
        row = self.row
        check_transition(row.id, row.phase, to_phase)
        entry = PhaseTransition(row.phase, to_phase, self.now, reason, dict(details or {}))
        values = {"phase": to_phase.value, **changes.values()}
        if row.lease is None:
            values.setdefault("available", False)
        self._write_move(entry, row.attempt, values)
        return entry

    def record_attempt(self, attempt: int, reason: str) -> PhaseTransition:
        """Start attempt `attempt` in the current phase and put the run back in the queue.

        from == to: the run does not move (a retry never goes backwards); the
        entry carries the new attempt number, and later moves carry it too.
        """
        row = self.row
        if row.is_terminal:
            raise PhaseTransitionError(row.id, row.phase, row.phase, "it is terminal")
        entry = PhaseTransition(
            row.phase, row.phase, self.now, reason, {"attempt_started": attempt}
        )
        self._write_move(entry, attempt, {"attempt": attempt, "available": True, **NO_LEASE})
        return entry

    def record_governance(self, passed: bool, reconciliation: dict[str, Any]) -> None:
        """Record a governance check's verdict on the run (no phase move)."""
        self._update(
            {
                "governance_passed": passed,
                "governance_checked_at": self.now,
                "governance_reconciliation": reconciliation,
            }
        )

    def add_ack(
        self,
        domain: str,
        action: str,
        result_id: str | None,
        error: str | None,
        late: bool = False,
        details: dict[str, Any] | None = None,
    ) -> DomainAck:
        ack = DomainAck(
            self.row.id, domain, action, result_id, error, self.now, late, details, self.actor
        )
        entry: dict[str, Any] = {
            "run_id": self.row.id,
            "domain": domain,
            "action": action,
            "result_id": result_id,
            "error": error,
            "at": self.now,
            "late": late,
            "details": details,
            "actor": self.actor,
            "chain_seq": self.row.chain_length + 1,
        }
        entry["hash"] = seal_ack(self._history_key, self._chain_head(), entry)
        self.conn.execute(_INSERT_ACK, entry)
        # in place: it is the chain's bookkeeping, and replace() of the row costs more than a seal
        self.row.chain_length, self.row.chain_head = entry["chain_seq"], entry["hash"]
        self._chain_head_written = False
        self.notify(ack_key(self.row.id))
        if self._acks is not None:
            self._acks.append(ack)
        return ack

    def ack_count(self) -> int:
        """How many acks the run has (read under the row lock: no writer adds one meanwhile)."""
        return int(self.conn.execute(_COUNT_ACKS, {"run_id": self.row.id}).scalar_one())

    def write_chain_head(self) -> None:
        """Store the run's chain head if acks advanced it since the last move wrote it.

        Called once, as the transaction ends: a move's UPDATE carries the head
        anyway, so only a transaction that ends with acks pays this UPDATE.
        """
        if not self._chain_head_written:
            head = {"chain_length": self.row.chain_length, "chain_head": self.row.chain_head}
            self.conn.execute(_UPDATE_RUN, {"match_id": self.row.id, **head})
            self._chain_head_written = True

    def record(self) -> RunRecord:
        """The run as this transaction leaves it, read on its own connection."""
        return load_records(self.conn, [self.row])[0]

    def expectations(self) -> list[AuditExpectation]:
        if self._expectations is None:
            self._expectations = load_expectations(self.conn, [self.row])[self.row.id]
        return self._expectations

    def acks(self) -> list[DomainAck]:
        if self._acks is None:
            self._acks = load_acks(self.conn, [self.row.id])[self.row.id]
        return self._acks

    # -- the write path of every move ------------------------------------------

    def _write_move(self, entry: PhaseTransition, attempt: int, values: dict[str, Any]) -> None:
        """The guarded UPDATE and its history row: the run only if it is still as loaded."""
        row = self.row
        sealed: dict[str, Any] = {
            "run_id": row.id,
            "seq": row.history_length + 1,
            "attempt": attempt,
            "from_phase": entry.from_phase.value,
            "to_phase": entry.to_phase.value,
            "at": entry.at,
            "reason": entry.reason,
            "details": entry.details or None,
            "actor": self.actor,
            "chain_seq": row.chain_length + 1,
        }
        sealed["hash"] = seal_transition(self._history_key, self._chain_head(), sealed)
        values = {
            **values,
            "history_length": row.history_length + 1,
            "updated_at": self.now,
            "chain_length": sealed["chain_seq"],
            "chain_head": sealed["hash"],
        }
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
                row.id, row.phase, entry.to_phase, "the run was moved concurrently"
            )
        self.conn.execute(_INSERT_TRANSITION, sealed)
        self._apply(values)
        self._chain_head_written = True

    def _chain_head(self) -> str:
        """The seal the next entry chains to: the last entry's, or the run's genesis."""
        if self.row.chain_head is None:
            # a run created before histories were sealed (migration 0004): its
            # chain starts from its declaration as it stands at its first seal
            genesis = seal_genesis(
                self._history_key, row_values(self.row), load_contract(self.conn, self.row.id)
            )
            self.row = replace(self.row, chain_head=genesis)
            return genesis
        return self.row.chain_head

    def _update(self, values: dict[str, Any]) -> None:
        values = {"updated_at": self.now, **values}
        self.conn.execute(_UPDATE_RUN, {"match_id": self.row.id, **values})
        self._apply(values)

    def _apply(self, values: dict[str, Any]) -> None:
        row = self.row
        if row.lease is not None and "lease_token" in values and values["lease_token"] is None:
            give_back(self.conn, row.tenant_id, row.concurrency_keys or ())
        if values.get("available") is True:
            wake_lane(self.conn, row.tenant_id)
        if row.concurrency_keys and values.get("phase") in _TERMINAL_VALUES:
            forget_run_keys(self.conn, row.id)
        self.row = row_from_mapping(row_values(row) | values)
        self._expectations = None  # deadlines depend on clock_started_at
