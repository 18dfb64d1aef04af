"""Whose turn it is: claims served in turn across tenants.

Each tenant's waiting runs form a lane, its row `tenant:<id>` in
concurrency_limits. A claim serves, among the lanes that may hold waiting runs
and have a free slot, the one served longest ago (`served_seq`: the claim count
when it was last served), and takes that tenant's best run: priority DESC,
created_at, id, through ix_runs_claimable_by_tenant(_handler). So one
tenant's thousand queued runs wait their turn behind another's ten, while
priority still decides within a tenant.

What a claim costs: the lanes in turn order (a few rows of a small index),
then one index seek per lane tried; a lane is passed over only when none of
its runs fits the claim (other handlers, full keys) or it has none left, and
a lane found with no waiting run at all is marked idle (`settle_idle_lanes`),
so idle tenants are not looked at again until a run of theirs is queued.

Runs without a tenant (auth off) form one lane; PostgreSQL reads an index in
order only after `=`, not `IS NULL`, so that lane is read from the queue of
all waiting runs (ix_runs_claimable), passing the runs of tenants before it:
cheap where every run lacks a tenant, which is how rok runs without keys.

Runs holding a full key are passed over inside the seek (NOT EXISTS over
run_concurrency_keys, only when some key is full): a tenant whose queue
starts with many such runs costs that many index entries per claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    Select,
    bindparam,
    exists,
    func,
    or_,
    select,
    tuple_,
    update,
)

from service.store.database import Database
from service.store.dialects import Dialect
from service.store.limits import SELECT_FULL_KEYS, TENANT_PREFIX, lane_tenant
from service.store.tables import concurrency_limits, run_concurrency_keys, runs

LANE_BATCH = 16
"""Lanes read at once, in turn order; a claim rarely needs more than the first."""

_limits = concurrency_limits.c
_DEFAULT_MAX = bindparam("default_max", type_=Integer)
_LANES_IN_TURN = (
    select(_limits.key, _limits.served_seq)
    .where(
        _limits.waiting,
        or_(
            func.coalesce(_limits.max_concurrent, _DEFAULT_MAX).is_(None),
            _limits.in_use < func.coalesce(_limits.max_concurrent, _DEFAULT_MAX),
        ),
    )
    .order_by(_limits.served_seq, _limits.key)
    .limit(LANE_BATCH)
)
# any waiting run of a tenant, whether or not a claim could take it now
_ANY_WAITING = select(runs.c.id).where(runs.c.available).limit(1)
_NAMED_WAITING = _ANY_WAITING.where(runs.c.tenant_id == bindparam("lane_tenant"))
_UNNAMED_WAITING = _ANY_WAITING.where(runs.c.tenant_id.is_(None))


@dataclass(frozen=True)
class Pick:
    """The run a claim chose, with what its slots are taken for."""

    run_id: str
    tenant_id: str | None
    keys: Sequence[str]


def pick_run(
    conn: Connection,
    dialect: Dialect,
    candidates: Select[Any],
    tenant_scope: str | None,
    tenant_default: int | None,
) -> tuple[Pick | None, list[str]]:
    """The run whose turn it is among `candidates` (service.store.leases.claim_query),
    locked for this claim; and the lanes found with no waiting run at all.

    `tenant_scope` confines the claim to one tenant's lane (a tenant's worker key).
    """
    full = [row.key for row in conn.execute(SELECT_FULL_KEYS)]
    named = dialect.skip_locked(lane_probe(candidates, full, named=True))
    unnamed = dialect.skip_locked(lane_probe(candidates, full, named=False))
    lanes = lanes_in_turn(tenant_scope)
    idle: list[str] = []
    after: tuple[int, str] | None = None
    while True:
        query = lanes if after is None else lanes.where(tuple_(*_TURN) > tuple_(*after))
        batch = conn.execute(query, {"default_max": tenant_default}).all()
        for lane in batch:
            tenant = lane_tenant(lane.key)
            found = conn.execute(unnamed if tenant is None else named, {"lane_tenant": tenant})
            run = found.first()
            if run is not None:
                return Pick(run.id, tenant, run.concurrency_keys or ()), idle
            if not _lane_waiting(conn, tenant):
                idle.append(lane.key)
        if len(batch) < LANE_BATCH:
            return None, idle
        after = (batch[-1].served_seq, batch[-1].key)


_TURN = (_limits.served_seq, _limits.key)


def lanes_in_turn(tenant_scope: str | None = None) -> Select[Any]:
    """Lanes with waiting runs and a free slot, served longest ago first
    (reads ix_concurrency_limits_turn); `default_max` is ROK_TENANT_CONCURRENCY."""
    if tenant_scope is None:
        return _LANES_IN_TURN
    return _LANES_IN_TURN.where(_limits.key == TENANT_PREFIX + tenant_scope)


def lane_probe(candidates: Select[Any], full_keys: Sequence[str], named: bool) -> Select[Any]:
    """The best of `candidates` in one tenant's lane (`lane_tenant`; named=False: runs
    without a tenant) holding no full key (reads ix_runs_claimable_by_tenant(_handler))."""
    probe = candidates.add_columns(runs.c.concurrency_keys)
    if full_keys:
        holds_full_key = exists().where(
            run_concurrency_keys.c.run_id == runs.c.id,
            run_concurrency_keys.c.key.in_(list(full_keys)),
        )
        probe = probe.where(~holds_full_key)
    if named:
        return probe.where(runs.c.tenant_id == bindparam("lane_tenant"))
    return probe.where(runs.c.tenant_id.is_(None))


def _lane_waiting(conn: Connection, tenant: str | None) -> bool:
    """Whether the tenant has a waiting run, whether or not a claim could take it now."""
    query = _UNNAMED_WAITING if tenant is None else _NAMED_WAITING
    return conn.execute(query, {"lane_tenant": tenant}).first() is not None


_SELECT_LANE = select(_limits.key).where(_limits.key == bindparam("lane_key"))
_MARK_IDLE = (
    update(concurrency_limits).where(_limits.key == bindparam("lane_key")).values(waiting=False)
)


def settle_idle_lanes(db: Database, lane_keys: Sequence[str]) -> None:
    """Mark lanes idle that still hold no waiting run, each in its own transaction.

    The race it closes: a run queued while the claim looked (wake_lane sets
    `waiting` in the creating transaction). The lane's row is locked first and
    only then is the lane looked at again, so either the creator's commit is
    seen, or the creator waits for this lock and sets `waiting` after it.
    Apart from the claim's transaction so that it locks nothing out of the
    order the claim keeps; not durable: a lost mark costs a claim one more seek.
    """
    locked = db.dialect.lock_run(_SELECT_LANE)
    for key in lane_keys:
        with db.write(durable=False) as conn:
            if conn.execute(locked, {"lane_key": key}).first() is None:
                continue
            if not _lane_waiting(conn, lane_tenant(key)):
                conn.execute(_MARK_IDLE, {"lane_key": key})
