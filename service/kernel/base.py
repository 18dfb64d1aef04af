"""KernelCore: what every move of the kernel shares — one run, its caller, its rules.

A move is one store transaction: lock the run, check the caller's tenant and
lease, consult the rules (service.kernel.rulebook), write, commit. The
lifecycle moves (service.kernel.kernel) and the run-control moves
(service.kernel.control) are both written on this.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

from service.config import Settings
from service.errors import RunNotFound
from service.kernel.governance import AckWait
from service.kernel.rulebook import DEFAULT_RULES, Move, Rule, consult
from service.kernel.rules import check_lease
from service.kernel.spec import SERVICE, Caller, RunSpec
from service.model.audit import ReconciliationResult
from service.model.phases import RunPhase, utc_now
from service.store.records import RunRecord, RunRow
from service.store.runs import RunStore
from service.store.transaction import RunTransaction


class KernelCore:
    """One run, who is acting on it, and the transaction every move is written in."""

    def __init__(
        self,
        run_id: str,
        store: RunStore,
        settings: Settings,
        spec: RunSpec | None = None,
        lease_token: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        caller_run_id: str | None = None,
        keep_records: bool = False,
        caller: Caller = SERVICE,
        rules: Sequence[Rule] = (),
    ) -> None:
        self.run_id = run_id
        # keep_records: read the run back inside each move's transaction, so
        # a caller answering with the run (the API) needs no second read, and
        # shows the run exactly as its move committed it
        self._keep_records = keep_records
        self.last_record: RunRecord | None = None
        self.last_row: RunRow | None = None
        """The run's row as the last move committed it (kept always: it costs nothing)."""
        self._store = store
        self._settings = settings
        self._spec = spec or RunSpec()
        self._lease_token = lease_token
        self._clock = clock
        self._caller_run_id = caller_run_id
        self._caller = caller
        self._rules: tuple[Rule, ...] = (*DEFAULT_RULES, *rules)
        self._declared = False

    # -- state ------------------------------------------------------------

    def load(self) -> RunRecord:
        record = self._store.get(self.run_id)
        self._check_tenant(record.row.tenant_id)
        return record

    @property
    def phase(self) -> RunPhase:
        return self.load().phase

    @property
    def is_terminal(self) -> bool:
        return self.load().row.is_terminal

    def reconciliation(self) -> ReconciliationResult:
        return self.load().reconciliation(self._clock())

    # -- the transaction of a move ---------------------------------------------

    @contextlib.contextmanager
    def _move(self, move: Move | None, lease_required: bool = True) -> Iterator[RunTransaction]:
        """A transaction for `move`: the tenant, the lease, then the rules, before anything."""
        with self._store.transaction(self.run_id, self._clock, self._caller.actor) as tx:
            self._check_tenant(tx.row.tenant_id)
            if lease_required or self._lease_token is not None:
                check_lease(tx, self._lease_token)
            if move is not None:
                consult(self._rules, move, tx.row, tx.now)
            yield tx
            self.last_row = tx.row
            if self._keep_records:
                self.last_record = tx.record()

    def _check_tenant(self, tenant_id: str | None) -> None:
        """A run of another tenant does not exist for this caller (its existence never leaks)."""
        if self._caller.tenant is not None and tenant_id != self._caller.tenant:
            raise RunNotFound(self.run_id)

    def _ack_wait(self, timeout_ms: int | None) -> AckWait:
        """The wait before a check; like a move, it finds no run of another tenant."""
        ms = self._settings.governance_timeout_ms if timeout_ms is None else timeout_ms
        return AckWait(self._store, self.run_id, ms / 1000.0, self._caller.tenant)
