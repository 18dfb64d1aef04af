"""One write transaction on one run: the only way a run's phase is ever written.

Guarantees (each held by the database, not only by the Python above it):
- Every move is checked against VALID_TRANSITIONS here (`transition`), so no
  caller, the kernel included, can persist a move the table forbids. The
  exceptions are entries with from == to, which never move the run: a new
  attempt (`record_attempt`) and a control event (`record_event`: a
  cancellation asked for, an approval asked for or given).
- A move is one guarded UPDATE (`WHERE phase = :expected AND history_length
  = :n`) plus its history row; zero rows updated means someone else moved the
  run first, and nothing is written.
- A history slot (run_id, seq) is unique, and so is a run's finalize_run ack.
- The owed feed's index (service.store.owed) follows the run in the same
  transaction: its rows take each move, lose a pair as it is acked, and go
  with the governance verdict or the run's exit from the owing phases.
- Every transition and ack is sealed as it is written: its place in the run's
  chain (`chain_seq`) and its HMAC over the previous seal (service.store.chain).
  The run's chain_length/chain_head ride in the move's UPDATE; acks after the
  last move of a transaction add one UPDATE of the run (`write_chain_head`).
- An alert (`emit`) is an outbox row in the same transaction: it commits with
  the move that caused it, or not at all (service.store.outbox).
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
from service.model.audit import ORCHESTRATOR_DOMAIN, AuditExpectation, DomainAck
from service.model.phases import TERMINAL_PHASES, PhaseTransition, RunPhase, check_transition
from service.store.chain import seal_ack, seal_genesis, seal_transition
from service.store.limits import forget_run_keys, give_back, wake_lane
from service.store.observers import EXECUTION_ENDED, Committed, Verdict, evidence_lag
from service.store.outbox import INSERT_EVENT, OUTBOX, EventType, new_event
from service.store.owed import OWING_PHASES, forget_pair, forget_run, move_owed, owed_key
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
# when execution ended (one move per run; read through uq_transitions_run_seq's run_id)
_EXECUTION_ENDED_AT = select(transitions.c.at).where(
    transitions.c.run_id == bindparam("run_id"),
    transitions.c.from_phase == EXECUTION_ENDED[0].value,
    transitions.c.to_phase == EXECUTION_ENDED[1].value,
)


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
        record_events: bool = False,
        observed: bool = False,
    ) -> None:
        self.conn = conn
        self.row = row
        self.now = now
        self.actor = actor
        """Who is writing (an API key's id; None with auth off or for the service itself)."""
        self._history_key = history_key
        self._record_events = record_events
        """Whether alerts go to the outbox (webhooks configured: ROK_WEBHOOK_URLS)."""
        self._chain_head_written = True
        self._expectations: list[AuditExpectation] | None = None
        self._acks: list[DomainAck] | None = None
        self.notified: set[str] = set()
        # for the store's observers (service.store.observers), told after the commit
        self._observed = observed
        self.moves: list[PhaseTransition] = []
        self.verdict: Verdict | None = None

    def notify(self, key: str) -> None:
        """Wake waiters on `key` once this transaction commits (and other replicas, on PG)."""
        self.notified.add(key)

    def emit(self, event_type: EventType, data: dict[str, Any]) -> None:
        """Write an alert about the run as it stands now to the outbox, in this transaction.

        Delivered after the commit (service.delivery); a transaction that rolls
        back sends nothing. Nothing is written while no webhook is configured.
        """
        if self._record_events:
            self.conn.execute(INSERT_EVENT, new_event(event_type, self.row, self.now, data))
            self.notify(OUTBOX)

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
        self._follow_owed(to_phase)
        return entry

    def record_attempt(
        self,
        attempt: int,
        reason: str,
        details: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
    ) -> PhaseTransition:
        """Start attempt `attempt` in the current phase and put the run back in the queue.

        from == to: the run does not move (a retry never goes backwards); the
        entry carries the new attempt number, and later moves carry it too.
        `values`: run columns the new attempt sets too (a retry's not_before).
        """
        row = self.row
        if row.is_terminal:
            raise PhaseTransitionError(row.id, row.phase, row.phase, "it is terminal")
        entry = PhaseTransition(
            row.phase, row.phase, self.now, reason, {**(details or {}), "attempt_started": attempt}
        )
        written = {**(values or {}), "attempt": attempt, "available": True, **NO_LEASE}
        self._write_move(entry, attempt, written)
        return entry

    def record_event(
        self, event: str, reason: str, details: dict[str, Any], values: dict[str, Any]
    ) -> PhaseTransition:
        """A control event in the history (from == to, `details.event` names it) with
        the run columns it sets.

        The run does not move; the entry is sealed like any other, so who
        asked for a cancellation or gave an approval is part of the evidence.
        """
        row = self.row
        if row.is_terminal:
            raise PhaseTransitionError(row.id, row.phase, row.phase, "it is terminal")
        entry = PhaseTransition(row.phase, row.phase, self.now, reason, {**details, "event": event})
        self._write_move(entry, row.attempt, values)
        return entry

    def release_lease(self) -> None:
        """Drop the lease and put the run back in the queue; nothing else changes."""
        self._update({"available": True, **NO_LEASE})

    def record_governance(self, passed: bool, reconciliation: dict[str, Any]) -> None:
        """Record a governance check's verdict on the run (no phase move)."""
        if self._observed:
            ended = self.conn.execute(_EXECUTION_ENDED_AT, {"run_id": self.row.id}).scalar()
            lag = evidence_lag(ended, [ack.at for ack in self.acks()])
            self.verdict = Verdict(passed, str(reconciliation.get("status")), lag)
        self._update(
            {
                "governance_passed": passed,
                "governance_checked_at": self.now,
                "governance_reconciliation": reconciliation,
            }
        )
        forget_run(self.conn, self.row.id)  # judged: what is not acked now is missing

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
        if not late and domain != ORCHESTRATOR_DOMAIN:
            forget_pair(self.conn, self.row.id, domain, action)
            self.notify(owed_key(domain))
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

    def committed(self) -> Committed:
        """What this transaction did, for the observers once it committed."""
        return Committed(self.row.id, self.row.tenant_id, tuple(self.moves), self.verdict)

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

    def _follow_owed(self, to_phase: RunPhase) -> None:
        """Keep the owed feed's index with the run (a judged run has no rows left)."""
        if self.row.governance_recorded:
            return
        if to_phase in OWING_PHASES:
            for key in move_owed(self.conn, self.row.id, to_phase):
                self.notify(key)  # a feed filtered on this phase may list the run now
        else:
            forget_run(self.conn, self.row.id)

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
        self.moves.append(entry)
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
