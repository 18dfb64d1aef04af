"""Claims and leases: which worker holds which run, fenced by a token.

Guarantees:
- A run is handed to at most one claimer: the claim selects and marks the run
  unavailable in one transaction. On PostgreSQL `FOR UPDATE SKIP LOCKED`
  lets concurrent claimers pass over a row another claimer holds instead of
  queueing behind it (and never both taking it); on SQLite `BEGIN IMMEDIATE`
  makes the whole claim one writer at a time, across processes too.
- A claim_id leases at most one run, however many copies of the claim race:
  ix_runs_lease_claim is unique on (worker, claim_id), so on PostgreSQL every
  copy but the first fails its UPDATE, rolls back, and answers the lease the
  first one took (on SQLite the copies run one at a time and the later ones
  find it before they look for a run).
- A heartbeat extends a lease only for the worker holding the current token,
  sent with it, and only before it expired: one guarded UPDATE, zero rows
  means 409. The token never appears anywhere but in the claim's answer and
  the heartbeat answers to its holder.
- Every claim issues a fresh token, so a worker presumed dead cannot act
  with its old one (the kernel compares tokens on every lifecycle move).
- Claims are served in turn across tenants, and take a slot of each of the
  run's concurrency keys and of its tenant's in the claim's transaction
  (service.store.turns, service.store.limits): a run whose keys are full is
  passed over; a claim that lost the last slot of a key to a concurrent one
  (PostgreSQL) rolls back and chooses again. The price on PostgreSQL: claims
  of one tenant queue on its lane's row from their last UPDATE to their commit
  (8 threads, one tenant: 297 claims/s against 504 before; 472 over 8 tenants).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError

from service.errors import InvalidRequest, LeaseLost, RunNotFound
from service.store.limits import SlotTaken, take_slots
from service.store.records import Lease, RunRecord, RunRow
from service.store.rows import load_expectations, load_record, load_records, row_from_mapping
from service.store.runs import RunStore
from service.store.signals import CLAIMABLE
from service.store.tables import runs
from service.store.turns import pick_run, settle_idle_lanes


class LeaseStore:
    def __init__(self, runs_store: RunStore, tenant_concurrency: int | None = None) -> None:
        self.runs = runs_store
        self.db = runs_store.db
        self.tenant_concurrency = tenant_concurrency
        """ROK_TENANT_CONCURRENCY: a tenant's limit where none was set; None: unlimited."""

    def claim(
        self,
        worker_id: str,
        lease_ms: int,
        handlers: Sequence[str] | None,
        now: datetime,
        claim_id: str | None = None,
        tenant_id: str | None = None,
    ) -> tuple[RunRecord, Lease] | None:
        """Lease the waiting run with the highest priority (then oldest) to `worker_id`.

        With a `claim_id`, a claim sent again (its answer lost on the way)
        returns the live lease that claim already took instead of a second run,
        and so do copies of it sent at once: at most one run is leased.
        """
        claimed = self._claim(worker_id, lease_ms, handlers, now, claim_id, tenant_id)
        if self.runs.observers:
            if claimed is None:
                self.runs.observers.claimed(None, None)
            else:
                self.runs.observers.claimed(claimed[0].row.id, claimed[0].row.tenant_id)
        return claimed

    def _claim(
        self,
        worker_id: str,
        lease_ms: int,
        handlers: Sequence[str] | None,
        now: datetime,
        claim_id: str | None,
        tenant_id: str | None,
    ) -> tuple[RunRecord, Lease] | None:
        if claim_id is None:
            return self._claim_once(worker_id, lease_ms, handlers, now, None, tenant_id)
        for _ in range(CLAIM_TRIES):
            try:
                return self._claim_once(worker_id, lease_ms, handlers, now, claim_id, tenant_id)
            except IntegrityError:
                # ix_runs_lease_claim: (worker, claim_id) already marks a lease. The
                # transaction rolled back, leasing nothing; the mark is a copy of this
                # claim that won the race (answer its lease), or an expired lease the
                # sweeper has not taken back yet (it is never replayed: free the mark)
                with self.db.write() as conn:
                    taken = _claimed(conn, worker_id, claim_id, tenant_id, now)
                    if taken is not None:
                        return taken
                    conn.execute(
                        _FREE_EXPIRED_CLAIM,
                        {"worker_id": worker_id, "claim_id": claim_id, "now": now},
                    )
        raise InvalidRequest(
            f"claim_id {claim_id!r} of worker {worker_id} is held by another live lease; "
            "send a fresh claim_id with each new claim"
        )

    def _claim_once(
        self,
        worker_id: str,
        lease_ms: int,
        handlers: Sequence[str] | None,
        now: datetime,
        claim_id: str | None,
        tenant_id: str | None,
    ) -> tuple[RunRecord, Lease] | None:
        """One claim; IntegrityError when `claim_id` already marks a lease."""
        for _ in range(SLOT_RACES):
            idle: list[str] = []
            try:
                claimed, idle = self._claim_in_turn(
                    worker_id, lease_ms, handlers, now, claim_id, tenant_id
                )
                return claimed
            except SlotTaken:
                continue  # rolled back: a concurrent claim took a key's last slot; choose again
            finally:
                if idle:
                    settle_idle_lanes(self.db, idle)
        return None

    def _claim_in_turn(
        self,
        worker_id: str,
        lease_ms: int,
        handlers: Sequence[str] | None,
        now: datetime,
        claim_id: str | None,
        tenant_id: str | None,
    ) -> tuple[tuple[RunRecord, Lease] | None, list[str]]:
        """One claim transaction: the run whose turn it is, its slots taken, its lease.

        Also the lanes found idle, for the caller to settle after the commit.
        """
        lease = Lease(worker_id, secrets.token_hex(16), now + timedelta(milliseconds=lease_ms))
        with self.db.write() as conn:
            if claim_id is not None:
                taken = _claimed(conn, worker_id, claim_id, tenant_id, now)
                if taken is not None:
                    return taken, []
            picked, idle = pick_run(
                conn,
                self.db.dialect,
                claim_query(handlers, None, now),
                tenant_id,
                self.tenant_concurrency,
            )
            if picked is None:
                return None, idle
            leased = conn.execute(
                _LEASE_RUN,
                {
                    "match_id": picked.run_id,
                    "available": False,
                    "lease_worker_id": lease.worker_id,
                    "lease_token": lease.token,
                    "lease_expires_at": lease.expires_at,
                    "lease_claim_id": claim_id,
                    "updated_at": now,
                },
            ).one()
            record = _leased_record(conn, row_from_mapping(leased._mapping))
            # last: the lane's row is the one claims of a tenant queue on (PostgreSQL)
            take_slots(conn, picked.tenant_id, picked.keys, self.tenant_concurrency)
        return (record, lease), idle

    def heartbeat(
        self,
        run_id: str,
        worker_id: str,
        token: str | None,
        lease_ms: int,
        now: datetime,
        tenant_id: str | None = None,
    ) -> Lease:
        """Extend the caller's lease; LeaseLost unless it sends the current token of a
        live lease it holds (no token, no heartbeat: the worker id alone proves nothing).

        With `tenant_id`, a run of another tenant does not exist (RunNotFound),
        whatever its lease: a 409 would tell that tenant's caller it exists.
        """
        expires_at = now + timedelta(milliseconds=lease_ms)
        guard = [
            runs.c.id == run_id,
            runs.c.lease_worker_id == worker_id,
            runs.c.lease_expires_at > now,
            runs.c.lease_token == token,
        ]
        if tenant_id is not None:
            guard.append(runs.c.tenant_id == tenant_id)
        with self.db.write() as conn:
            renewed = None
            cancel: str | None = None
            if token is not None:
                result = conn.execute(
                    update(runs)
                    .where(*guard)
                    .values(lease_expires_at=expires_at)
                    .returning(runs.c.lease_token, runs.c.cancel_requested_at, runs.c.cancel_reason)
                )
                answered = result.first()
                if answered is not None:
                    renewed = answered.lease_token
                    if answered.cancel_requested_at is not None:
                        # the worker learns of a cancellation from its next heartbeat
                        cancel = answered.cancel_reason or "cancelled"
            if renewed is None:
                current = conn.execute(
                    select(runs.c.lease_worker_id, runs.c.lease_token, runs.c.tenant_id).where(
                        runs.c.id == run_id
                    )
                ).first()
                if current is None or tenant_id not in (None, current.tenant_id):
                    raise RunNotFound(run_id)
                holder, current_token = current.lease_worker_id, current.lease_token
                raise LeaseLost(run_id, _why_refused(holder, current_token, worker_id, token))
        return Lease(worker_id, renewed, expires_at, cancel)

    def wake_claimers(self) -> None:
        self.runs.signals.notify(CLAIMABLE)


CLAIM_TRIES = 3
"""Tries of one claim_id: a lost race is answered by the second; a third frees an expired mark."""
SLOT_RACES = 20
"""Choices of one claim that may each lose a key's last slot to another claim (each loss
is another claim's success); past them the claim answers no run, as if none waited."""


def _claimed(
    conn: Connection, worker_id: str, claim_id: str, tenant_id: str | None, now: datetime
) -> tuple[RunRecord, Lease] | None:
    """The run and live lease `claim_id` already took, if any."""
    claimed = _SELECT_CLAIMED
    if tenant_id is not None:  # the same worker and claim ids in another tenant
        claimed = claimed.where(runs.c.tenant_id == tenant_id)
    taken = conn.execute(
        claimed, {"worker_id": worker_id, "claim_id": claim_id, "now": now}
    ).first()
    if taken is None:
        return None
    return load_record(conn, taken.id), Lease(worker_id, taken.lease_token, taken.lease_expires_at)


# The lease written on the run the claim picked, which comes back whole (no second
# read). By id alone: the pick locked the row (PostgreSQL; on SQLite this is the
# only writer) and saw it waiting, in this transaction. With `AND available`
# PostgreSQL could serve it from a partial index of waiting runs, scanning that
# whole index for the id: statistics taken over a million finished runs see no
# waiting one, so that index looked empty (and it keeps the entries of claimed
# runs until a vacuum).
_LEASE_RUN = update(runs).where(runs.c.id == bindparam("match_id")).returning(*runs.c)
# The run a claim took, while its lease lives (reads ix_runs_lease_claim).
_SELECT_CLAIMED = select(runs.c.id, runs.c.lease_token, runs.c.lease_expires_at).where(
    runs.c.lease_worker_id == bindparam("worker_id"),
    runs.c.lease_claim_id == bindparam("claim_id"),
    runs.c.lease_claim_id.is_not(None),
    runs.c.lease_token.is_not(None),
    runs.c.lease_expires_at > bindparam("now"),
)
# An expired lease keeps its claim_id until the sweeper takes the run back; it is
# never replayed, so a new claim under that id frees the mark (the lease stays).
_FREE_EXPIRED_CLAIM = (
    update(runs)
    .where(
        runs.c.lease_worker_id == bindparam("worker_id"),
        runs.c.lease_claim_id == bindparam("claim_id"),
        runs.c.lease_expires_at <= bindparam("now"),
    )
    .values(lease_claim_id=None)
)


def _leased_record(conn: Connection, row: RunRow) -> RunRecord:
    """The claimed run whole. A run that waited since its creation has no history and no
    ack (nothing sealed since its genesis): only its contract is read, not two indexes
    that grow with every run kept (at a million finished runs, a cold page each)."""
    if row.history_length == 0 and row.chain_length == 0 and row.chain_head is not None:
        return RunRecord(row, [], load_expectations(conn, [row])[row.id], [])
    return load_records(conn, [row])[0]


def claim_query(
    handlers: Sequence[str] | None, tenant_id: str | None = None, now: datetime | None = None
) -> Select[Any]:
    """The next waiting run, through the partial index of waiting runs only.

    Its cost follows the queue's length, not the number of finished runs
    (tests/store/test_claims.py checks the plan on both databases). With
    `now`, a run whose not_before (its scheduled start, a retry's backoff) is
    later is passed over.
    """
    query = select(runs.c.id).where(runs.c.available)
    if now is not None:
        query = query.where(or_(runs.c.not_before.is_(None), runs.c.not_before <= now))
    if handlers:
        query = query.where(runs.c.handler.in_(list(handlers)))
    if tenant_id is not None:  # a tenant's worker key leases only its tenant's runs
        query = query.where(runs.c.tenant_id == tenant_id)
    return query.order_by(runs.c.priority.desc(), runs.c.created_at, runs.c.id).limit(1)


def _why_refused(
    holder: str | None, current_token: str | None, worker_id: str, token: str | None
) -> str:
    if holder is None:
        return "the run holds no lease (it was finished, failed or released)"
    if holder != worker_id:
        return f"the run is leased to worker {holder}, not {worker_id}"
    if token is None:
        return "a heartbeat needs the lease's token: send it as lease_token or X-Lease-Token"
    if token != current_token:
        return "the token is not the run's current lease"
    return "the lease expired"
