"""The owed feed: which live runs still wait for a domain's evidence, read from its own index.

`pending_expectations` holds one row per domain expectation a run still owes
(orchestrator/finalize_run is the kernel's own and never listed). The single
write path keeps it exact, each change in the transaction that causes it:

| when (service.store.runs / transaction)   | the index                            |
|--------------------------------------------|--------------------------------------|
| a run is created with its contract         | a row per domain expectation         |
| the run moves within CREATED … GOV_CHECK   | its rows take the new phase          |
| a timely ack of the pair lands             | that pair's row goes                 |
| the governance verdict is recorded         | the run's rows go (acks now are late)|
| the run leaves those phases (ends, …)      | the run's rows go                    |

So the feed reads this table alone, in index order; its cost follows the
runs that owe something, never the finished ones. An expectation whose own
deadline passed stays listed while the run lives: an ack still turns it
ACKED (service.model.audit.expectation_status looks at acks first), so the
domain still owes it.

Waiting (`OwedFeed.wait`) costs a future on the event loop, like the
governance check's: it subscribes to the domain's key first (a row committed
between the read and the wait still wakes it), reads on a thread, and sleeps
until a commit notifies the key here or on another replica (PostgreSQL
NOTIFY), or the store's re-check interval passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, delete, insert, select, update

from service.model.audit import ORCHESTRATOR_DOMAIN
from service.model.phases import RunPhase
from service.store.database import Database
from service.store.signals import Signals
from service.store.tables import pending_expectations as pending

OWING_PHASES = (
    RunPhase.CREATED,
    RunPhase.AUTHORIZED,
    RunPhase.EXECUTING,
    RunPhase.GOVERNANCE_CHECK,
)
"""The phases in which a run is listed: it has not been judged yet."""


def owed_key(domain: str) -> str:
    """Notified when a run may have become owed to `domain` (or stopped being owed)."""
    return f"owed:{domain}"


# -- the writes (called by the single write path, inside its transaction) ---------

_INSERT = insert(pending)
_FORGET_PAIR = delete(pending).where(
    pending.c.run_id == bindparam("run_id"),
    pending.c.domain == bindparam("domain"),
    pending.c.action == bindparam("action"),
)
_FORGET_RUN = delete(pending).where(pending.c.run_id == bindparam("run_id"))
_MOVE = (
    update(pending)
    .where(pending.c.run_id == bindparam("match_run_id"))
    .values(phase=bindparam("to_phase"))
    .returning(pending.c.domain)
)


def record_owed(
    conn: Connection,
    run: dict[str, Any],
    contract: Iterable[tuple[str, str]],
) -> set[str]:
    """Index a new run's domain expectations; return the keys to notify.

    `run` is the run's row as inserted (id, tenant_id, handler, phase, created_at).
    """
    rows = [
        {
            "run_id": run["id"],
            "domain": domain,
            "action": action,
            "tenant_id": run["tenant_id"],
            "handler": run["handler"],
            "phase": run["phase"],
            "created_at": run["created_at"],
        }
        for domain, action in contract
        if domain != ORCHESTRATOR_DOMAIN
    ]
    if rows:
        conn.execute(_INSERT, rows)
    return {owed_key(r["domain"]) for r in rows}


def forget_pair(conn: Connection, run_id: str, domain: str, action: str) -> None:
    """The pair was acked: nobody owes it any more."""
    conn.execute(_FORGET_PAIR, {"run_id": run_id, "domain": domain, "action": action})


def forget_run(conn: Connection, run_id: str) -> None:
    """The run was judged or left the owing phases: it owes nothing to anyone now."""
    conn.execute(_FORGET_RUN, {"run_id": run_id})


def move_owed(conn: Connection, run_id: str, to_phase: RunPhase) -> set[str]:
    """The run moved within the owing phases; return the keys of the domains it still owes."""
    moved = conn.execute(_MOVE, {"match_run_id": run_id, "to_phase": to_phase.value})
    return {owed_key(domain) for (domain,) in moved}


# -- the read ---------------------------------------------------------------------


@dataclass(frozen=True)
class OwedQuery:
    """What a caller asks the feed for; `tenant_id` None: every tenant (admin, auth off)."""

    domain: str
    limit: int
    phase: RunPhase | None = None
    tenant_id: str | None = None


@dataclass(frozen=True)
class OwedRun:
    """A live run that owes `domain` the `actions` (sorted), with what a domain needs to pick it."""

    run_id: str
    tenant_id: str | None
    handler: str | None
    phase: RunPhase
    created_at: datetime
    actions: tuple[str, ...]


_COLUMNS = (
    pending.c.run_id,
    pending.c.action,
    pending.c.tenant_id,
    pending.c.handler,
    pending.c.phase,
    pending.c.created_at,
)


def feed_query(query: OwedQuery) -> Select[Any]:
    """The rows of the feed's first `limit` entries: an index range in index order.

    Oldest run first, its actions together (the order of ix_pending_expectations_feed,
    or _phase with a phase), so the read stops after `limit` rows and sorts nothing.
    """
    statement = select(*_COLUMNS).where(pending.c.domain == query.domain)
    if query.phase is not None:
        statement = statement.where(pending.c.phase == query.phase.value)
    if query.tenant_id is not None:
        statement = statement.where(pending.c.tenant_id == query.tenant_id)
    order = (pending.c.created_at, pending.c.run_id, pending.c.action)
    return statement.order_by(*order).limit(query.limit)


def _rest_of_run(query: OwedQuery, run_id: str, after_action: str) -> Select[Any]:
    """The actions of the page's last run that the row limit cut off (primary key range)."""
    return (
        select(*_COLUMNS)
        .where(
            pending.c.run_id == run_id,
            pending.c.domain == query.domain,
            pending.c.action > after_action,
        )
        .order_by(pending.c.action)
    )


def read_owed(conn: Connection, query: OwedQuery) -> list[OwedRun]:
    """At most `limit` runs owing `domain`, oldest first.

    `limit` bounds the rows read, so a page holds fewer runs when runs owe
    several actions of the domain; the last run's actions are always complete.
    """
    rows = list(conn.execute(feed_query(query)))
    if rows and len(rows) == query.limit:
        last = rows[-1]
        rows += list(conn.execute(_rest_of_run(query, last.run_id, last.action)))
    return _group(rows)


def _group(rows: Sequence[Any]) -> list[OwedRun]:
    """One entry per run, in the rows' order (a run's rows are adjacent)."""
    actions: dict[str, list[str]] = {}
    first: dict[str, Any] = {}
    for row in rows:
        actions.setdefault(row.run_id, []).append(row.action)
        first.setdefault(row.run_id, row)
    return [
        OwedRun(r.run_id, r.tenant_id, r.handler, RunPhase(r.phase), r.created_at, tuple(a))
        for r, a in ((first[run_id], acts) for run_id, acts in actions.items())
    ]


class OwedFeed:
    """GET /domains/{domain}/owed: read now, or wait (on the event loop) until one is owed."""

    def __init__(self, db: Database, signals: Signals) -> None:
        self._db = db
        self._signals = signals

    def read(self, query: OwedQuery) -> list[OwedRun]:
        with self._db.read() as conn:
            return read_owed(conn, query)

    async def wait(self, query: OwedQuery, wait_s: float) -> list[OwedRun]:
        """The feed as soon as it lists a run, or the empty feed once `wait_s` passed.

        No thread waits: each read hops to a thread and back; between reads
        this is a future, woken by a commit that notifies the domain's key.
        """
        deadline = time.monotonic() + wait_s
        loop = asyncio.get_running_loop()
        while True:
            with self._signals.subscribe(owed_key(query.domain), loop) as wake:
                owed = await asyncio.to_thread(self.read, query)
                left = deadline - time.monotonic()
                if owed or left <= 0:
                    return owed
                await wake.wait(min(left, self._signals.recheck_interval_s))
