"""Concurrency limits: how many leased runs may hold a key at once.

A run lists `concurrency_keys` at creation; every run also holds its tenant's
key, `tenant:<tenant_id>` (its lane: service.store.turns), whose default
limit is ROK_TENANT_CONCURRENCY. `in_use` counts the leased runs holding a key.

Guarantees (each held by the database, not only by the Python above it):
- A slot is taken by the claim that leases the run (`take_slots`) and given
  back by whatever ends that lease: a terminal move, the sweeper's release for
  another attempt, a release (`give_back`, called by RunTransaction for every
  write that drops a lease), in the same transaction, so a slot never leaks:
  a run holds its keys' slots exactly while it holds a lease.
- No key goes over its limit, however many claimers race: a slot is taken by
  one guarded UPDATE (`... WHERE in_use < max`); on PostgreSQL the loser of a
  race for the last slot waits on the row, re-reads it, updates nothing and
  its claim rolls back and chooses again (SlotTaken). On SQLite claims are one
  writer at a time (BEGIN IMMEDIATE) and the guard never refuses.
- Rows are locked in one order everywhere (a run's own keys sorted, then its
  lane), so claims, moves and creations never wait for each other in a cycle.
- A lowered limit never ends a lease: the runs holding slots keep them, and
  claims wait until `in_use` is below the new limit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from service.errors import InvalidRequest, RokError
from service.store.database import Database
from service.store.tables import FULL_KEY, concurrency_limits, run_concurrency_keys

TENANT_PREFIX = "tenant:"
"""A tenant's own key (its lane) is `tenant:<tenant_id>`; runs cannot list one."""
MAX_KEYS_PER_RUN = 8
MAX_LIMIT = 1_000_000
KEY_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}")
"""What a key a run lists looks like: a letter or digit, then up to 99 of these."""
_KEY_RULE = "1-100 characters: letters, digits and . _ : / -, starting with a letter or digit"


class SlotTaken(RokError):
    """Another claimer took the last slot of a key between the choice and the take."""


def tenant_key(tenant_id: str | None) -> str:
    """The lane key of a tenant; runs without a tenant share the lane `tenant:`."""
    return TENANT_PREFIX + (tenant_id or "")


def lane_tenant(key: str) -> str | None:
    """The tenant of a lane key (the inverse of tenant_key)."""
    return key.removeprefix(TENANT_PREFIX) or None


def check_run_keys(keys: Sequence[str]) -> tuple[str, ...]:
    """The keys a run lists, or InvalidRequest naming the first one rok refuses."""
    if len(keys) > MAX_KEYS_PER_RUN:
        raise InvalidRequest(
            f"a run lists at most {MAX_KEYS_PER_RUN} concurrency_keys, not {len(keys)}"
        )
    seen: set[str] = set()
    for key in keys:
        if not isinstance(key, str) or not KEY_SHAPE.fullmatch(key):
            raise InvalidRequest(f"concurrency key {key!r} is not a key: {_KEY_RULE}")
        if key.startswith(TENANT_PREFIX):
            raise InvalidRequest(
                f"concurrency key {key!r}: keys starting with {TENANT_PREFIX!r} are the "
                "tenants' own; every run holds its tenant's key already"
            )
        if key in seen:
            raise InvalidRequest(f"concurrency key {key!r} is listed twice")
        seen.add(key)
    return tuple(keys)


def check_limit_key(key: str) -> str:
    """A key a limit can be set on: a run's key, or `tenant:<tenant_id>`; else InvalidRequest."""
    if key.startswith(TENANT_PREFIX):
        tenant = key.removeprefix(TENANT_PREFIX)
        if 1 <= len(tenant) <= 200 and tenant.isprintable():
            return key
        raise InvalidRequest(
            f"limit key {key!r}: a tenant's key is tenant:<tenant_id>, with a tenant id of "
            "1-200 printable characters"
        )
    if not KEY_SHAPE.fullmatch(key):
        raise InvalidRequest(f"limit key {key!r} is not a key: {_KEY_RULE}, or tenant:<id>")
    return key


def check_max_concurrent(value: int) -> int:
    if not 0 <= value <= MAX_LIMIT:
        raise InvalidRequest(
            f"max_concurrent {value} is out of range: 0 (no claims) to {MAX_LIMIT}"
        )
    return value


def upsert(conn: Connection, table: Table) -> Any:
    """INSERT … ON CONFLICT for `conn`'s database (both spell it alike, in their own module)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return insert(table)


def queue_run(conn: Connection, run_id: str, tenant_id: str | None, keys: Sequence[str]) -> None:
    """At creation, in its transaction: the run's keys recorded, its lane marked waiting."""
    ordered = sorted(keys)
    if ordered:
        conn.execute(
            upsert(conn, concurrency_limits).on_conflict_do_nothing(index_elements=["key"]),
            [{"key": key} for key in ordered],
        )
        conn.execute(
            run_concurrency_keys.insert(), [{"run_id": run_id, "key": key} for key in ordered]
        )
    wake_lane(conn, tenant_id)


def wake_lane(conn: Connection, tenant_id: str | None) -> None:
    """Mark the tenant's lane as holding waiting runs (whatever makes a run claimable calls it).

    It writes, so it locks the lane's row even when the flag is set: a claimer
    that found the lane idle clears the flag only under that lock, after
    looking again (service.store.turns.settle_idle_lanes), so a run queued
    meanwhile is never left in a lane marked idle.
    """
    statement = upsert(conn, concurrency_limits).values(key=tenant_key(tenant_id), waiting=True)
    conn.execute(statement.on_conflict_do_update(index_elements=["key"], set_={"waiting": True}))


_FORGET_KEYS = run_concurrency_keys.delete().where(
    run_concurrency_keys.c.run_id == bindparam("match_run")
)


def forget_run_keys(conn: Connection, run_id: str) -> None:
    """At the run's end: its key rows go, so claims read the keys of live runs only
    (the run's own column keeps them for its record)."""
    conn.execute(_FORGET_KEYS, {"match_run": run_id})


# A slot taken only while the key has room: the guard the database re-checks
# on the row a concurrent claimer just updated (PostgreSQL), or alone (SQLite).
_TAKE_SLOT = (
    update(concurrency_limits)
    .where(
        concurrency_limits.c.key == bindparam("match_key"),
        or_(
            func.coalesce(concurrency_limits.c.max_concurrent, bindparam("default_max")).is_(None),
            concurrency_limits.c.in_use
            < func.coalesce(concurrency_limits.c.max_concurrent, bindparam("default_max")),
        ),
    )
    .values(in_use=concurrency_limits.c.in_use + 1)
)
# The lane's slot and its turn in one statement, the turn read inside it (an alias:
# the subquery reads every waiting lane, not the row being updated).
_LANES = concurrency_limits.alias("lanes")
_NEXT_TURN = (
    select(func.coalesce(func.max(_LANES.c.served_seq), 0) + 1)
    .where(_LANES.c.waiting)
    .scalar_subquery()
)
_TAKE_LANE_SLOT = _TAKE_SLOT.values(served_seq=_NEXT_TURN)
_GIVE_BACK = (
    update(concurrency_limits)
    .where(concurrency_limits.c.key == bindparam("match_key"), concurrency_limits.c.in_use > 0)
    .values(in_use=concurrency_limits.c.in_use - 1)
)


def take_slots(
    conn: Connection, tenant_id: str | None, keys: Iterable[str], tenant_default: int | None
) -> None:
    """The claim's half: one slot of each key, then of the lane; SlotTaken if one is full.

    The lane's row also records its turn (`served_seq`: one more than any
    waiting lane's, service.store.turns), in the same UPDATE.
    """
    for key in sorted(keys):
        taken = conn.execute(_TAKE_SLOT, {"match_key": key, "default_max": None})
        if taken.rowcount != 1:
            raise SlotTaken(f"concurrency key {key!r} is full")
    lane = tenant_key(tenant_id)
    taken = conn.execute(_TAKE_LANE_SLOT, {"match_key": lane, "default_max": tenant_default})
    if taken.rowcount != 1:
        raise SlotTaken(f"concurrency key {lane!r} is full")


def give_back(conn: Connection, tenant_id: str | None, keys: Iterable[str]) -> None:
    """The end of a lease's half: one slot of each key and of the lane back.

    `in_use > 0` guards the count: a lease taken before migration 0006 held no
    slot of its keys (it had none), and its end must not count one back.
    """
    for key in [*sorted(keys), tenant_key(tenant_id)]:
        conn.execute(_GIVE_BACK, {"match_key": key})


SELECT_FULL_KEYS = select(concurrency_limits.c.key).where(
    and_(concurrency_limits.c.in_use >= concurrency_limits.c.max_concurrent)
)
"""Keys with no free slot (reads ix_concurrency_limits_full); checked against FULL_KEY."""
assert FULL_KEY == "in_use >= max_concurrent"  # the index's WHERE, as the query writes it


@dataclass(frozen=True)
class Room:
    """Whether a run's keys have a free slot each: the answer the kernel's rules present."""

    free: bool
    reason: str | None = None
    """Which key is full, and how full, when `free` is False."""


@dataclass(frozen=True)
class KeyUsage:
    key: str
    max_concurrent: int | None
    """The limit set by PUT /limits/{key}; None: none set."""
    effective_max: int | None
    """What claims obey: max_concurrent, else ROK_TENANT_CONCURRENCY for a tenant's key."""
    in_use: int


class LimitStore:
    """Setting limits and reading their use (the API's side of service.store.limits)."""

    def __init__(self, db: Database, tenant_default: int | None) -> None:
        self.db = db
        self.tenant_default = tenant_default

    def set_limit(self, key: str, max_concurrent: int, now: datetime) -> KeyUsage:
        """Set (or change) a key's limit; the runs holding its slots keep them."""
        check_limit_key(key)
        check_max_concurrent(max_concurrent)
        values = {"max_concurrent": max_concurrent, "updated_at": now}
        with self.db.write() as conn:
            conn.execute(
                upsert(conn, concurrency_limits)
                .values(key=key, **values)
                .on_conflict_do_update(index_elements=["key"], set_=values)
            )
            row = conn.execute(_SELECT_KEYS.where(concurrency_limits.c.key == key)).one()
        return self._usage(row)

    def usage(self, tenant_id: str | None = None) -> list[KeyUsage]:
        """Every key, by name; with `tenant_id`, that tenant's own key only."""
        query = _SELECT_KEYS.order_by(concurrency_limits.c.key)
        if tenant_id is not None:
            query = query.where(concurrency_limits.c.key == tenant_key(tenant_id))
        with self.db.read() as conn:
            return [self._usage(row) for row in conn.execute(query)]

    def room(self, tenant_id: str | None, keys: Sequence[str]) -> Room:
        """Whether a run of `tenant_id` listing `keys` would get a slot of each now."""
        with self.db.read() as conn:
            return room_for(conn, tenant_id, keys, self.tenant_default)

    def _usage(self, row: Any) -> KeyUsage:
        return _usage_of(row, self.tenant_default)


def room_for(
    conn: Connection, tenant_id: str | None, keys: Sequence[str], tenant_default: int | None
) -> Room:
    """Whether a run of `tenant_id` listing `keys` would get a slot of each, read on `conn`
    (inside a run's transaction, for a rule the kernel consults before a move)."""
    wanted = [*keys, tenant_key(tenant_id)]
    query = _SELECT_KEYS.where(concurrency_limits.c.key.in_(wanted))
    found = {row.key: _usage_of(row, tenant_default) for row in conn.execute(query)}
    for key in wanted:
        usage = found.get(key)
        if usage is None:  # no run listed it yet and no limit was set
            default = tenant_default if key.startswith(TENANT_PREFIX) else None
            usage = KeyUsage(key, None, default, 0)
        if usage.effective_max is not None and usage.in_use >= usage.effective_max:
            return Room(
                False,
                f"concurrency key {key!r} is full: {usage.in_use} of "
                f"{usage.effective_max} slots in use",
            )
    return Room(True)


def _usage_of(row: Any, tenant_default: int | None) -> KeyUsage:
    effective = row.max_concurrent
    if effective is None and row.key.startswith(TENANT_PREFIX):
        effective = tenant_default
    return KeyUsage(row.key, row.max_concurrent, effective, row.in_use)


_SELECT_KEYS = select(
    concurrency_limits.c.key, concurrency_limits.c.max_concurrent, concurrency_limits.c.in_use
)
