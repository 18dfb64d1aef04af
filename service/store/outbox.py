"""The outbox: alerts written with the move that caused them, delivered after commit.

Guarantees (each held by the database, not only by the Python above it):
- An event is inserted by the transaction that caused it (RunTransaction.emit):
  a move that rolls back leaves no event, and a committed one never lacks its event.
- An attempt is claimed before anything is sent (`claim`): one guarded UPDATE
  (`WHERE state = 'pending' AND attempts = :seen`), so of two deliverers that
  read the same due event, one sends it; the claim pushes `next_attempt_at`
  past the attempt's longest duration, so a deliverer that died mid-attempt
  leaves the event due again (at least once, never lost).
- Only the elected replica delivers (`elected`, an advisory lock on PostgreSQL).
- Nothing secret is stored: endpoints are named by a digest (`endpoint_digest`),
  never by their URL, which may carry a token.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, insert, select, text, update

from service.store.cursors import decode_cursor, encode_cursor
from service.store.database import Database
from service.store.records import RunRow
from service.store.tables import PENDING_EVENT, events

OUTBOX = "outbox"
"""Signal key notified when an event commits: wakes the deliverer."""
OUTBOX_LOCK_KEY = 0x524F4B4F  # "ROKO": the deliverers' election (not the sweeper's)


class EventType(StrEnum):
    RUN_FAILED = "run.failed"
    """A run ended FAILED (whoever failed it)."""
    RUN_STALE = "run.stale"
    """The sweeper failed a run whose finalize_run deadline passed (after its run.failed)."""
    GOVERNANCE_INCOMPLETE = "governance.incomplete"
    """A governance check was recorded with evidence missing or failed."""


class EventState(StrEnum):
    PENDING = "pending"
    """Not yet accepted by every endpoint; `next_attempt_at` says when it is tried."""
    DELIVERED = "delivered"
    """Every configured endpoint answered 2xx."""
    FAILED = "failed"
    """Given up after ROK_WEBHOOK_MAX_ATTEMPTS attempts; `last_error` says why."""


INSERT_EVENT = insert(events)
# the partial index's own text: with a bound parameter SQLite cannot see that
# ix_events_due applies, and would read every event ever delivered
PENDING_EVENT_CLAUSE = text(PENDING_EVENT)


def iso_utc(at: datetime) -> str:
    """A time in an event's body: ISO 8601 in UTC with a Z, as the API writes times."""
    return at.isoformat().replace("+00:00", "Z")


def new_event(
    event_type: EventType, row: RunRow, now: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    """The outbox row of one event about `row` (the run as the move leaves it).

    The body is written once, so every retry sends the same bytes; `data`
    always starts with the run's id, tenant and phase (DESIGN section 10).
    """
    body = {
        "type": event_type.value,
        "timestamp": iso_utc(now),
        "data": {"run_id": row.id, "tenant_id": row.tenant_id, "phase": row.phase.value, **data},
    }
    return {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": event_type.value,
        "run_id": row.id,
        "tenant_id": row.tenant_id,
        "body": json.dumps(body, separators=(",", ":"), sort_keys=True),
        "created_at": now,
        "state": EventState.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
    }


def endpoint_digest(url: str) -> str:
    """How the outbox remembers an endpoint that accepted an event (never the URL itself)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Event:
    id: str
    type: EventType
    run_id: str
    tenant_id: str | None
    body: str
    created_at: datetime
    state: EventState
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None
    delivered_to: tuple[str, ...]

    @property
    def payload(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass(frozen=True)
class EventFilter:
    tenant_id: str | None = None
    run_id: str | None = None
    type: EventType | None = None
    state: EventState | None = None


def _event(m: Any) -> Event:
    return Event(
        id=m.id,
        type=EventType(m.type),
        run_id=m.run_id,
        tenant_id=m.tenant_id,
        body=m.body,
        created_at=m.created_at,
        state=EventState(m.state),
        attempts=m.attempts,
        next_attempt_at=m.next_attempt_at,
        last_error=m.last_error,
        delivered_at=m.delivered_at,
        delivered_to=tuple(m.delivered_to or ()),
    )


class OutboxStore:
    """The deliverer's reads and writes, and the operators' view of the events."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def elected(self) -> AbstractContextManager[bool]:
        """True, while held, on the one replica that delivers now (always on SQLite)."""
        return self.db.dialect.elected(self.db.engine, OUTBOX_LOCK_KEY)

    def due(self, now: datetime, limit: int) -> list[Event]:
        """Pending events whose next attempt is due, oldest due first (reads ix_events_due)."""
        query = (
            select(events)
            .where(PENDING_EVENT_CLAUSE, events.c.next_attempt_at <= now)
            .order_by(events.c.next_attempt_at)
            .limit(limit)
        )
        with self.db.read() as conn:
            return [_event(r) for r in conn.execute(query)]

    def next_due(self) -> datetime | None:
        """When the earliest pending event is next tried (None: nothing pending)."""
        query = select(func.min(events.c.next_attempt_at)).where(PENDING_EVENT_CLAUSE)
        with self.db.read() as conn:
            found: datetime | None = conn.execute(query).scalar()
        return found

    def claim(self, event: Event, now: datetime, hold_until: datetime) -> bool:
        """Take the next attempt of `event` as it was read; False if another deliverer did."""
        claimed = (
            update(events)
            .where(
                events.c.id == event.id,
                PENDING_EVENT_CLAUSE,
                events.c.attempts == event.attempts,
            )
            .values(attempts=event.attempts + 1, next_attempt_at=hold_until)
        )
        with self.db.write() as conn:
            return conn.execute(claimed).rowcount == 1

    def record_attempt(
        self,
        event: Event,
        now: datetime,
        delivered_to: tuple[str, ...],
        error: str | None,
        retry_at: datetime | None,
    ) -> EventState:
        """The outcome of the attempt `claim` took: delivered, retried at `retry_at`, or failed.

        `error` None means every endpoint accepted it; otherwise `retry_at`
        None gives it up. Guarded by the attempt number, so a deliverer whose
        claim expired under it cannot overwrite a later attempt's outcome.
        """
        if error is None:
            state, values = EventState.DELIVERED, {"delivered_at": now, "next_attempt_at": None}
        elif retry_at is None:
            state, values = EventState.FAILED, {"next_attempt_at": None}
        else:
            state, values = EventState.PENDING, {"next_attempt_at": retry_at}
        outcome = (
            update(events)
            .where(events.c.id == event.id, events.c.attempts == event.attempts + 1)
            .values(state=state.value, last_error=error, delivered_to=list(delivered_to), **values)
        )
        with self.db.write() as conn:
            conn.execute(outcome)
        return state

    def get(self, event_id: str) -> Event | None:
        with self.db.read() as conn:
            found = conn.execute(select(events).where(events.c.id == event_id)).first()
        return None if found is None else _event(found)

    def list(
        self, filters: EventFilter, limit: int, cursor: str | None
    ) -> tuple[list[Event], str | None]:
        """Newest first; `cursor` continues after the last event of the previous page.

        InvalidRequest for a cursor this service did not give out.
        """
        query = select(events)
        if filters.tenant_id is not None:
            query = query.where(events.c.tenant_id == filters.tenant_id)
        if filters.run_id is not None:
            query = query.where(events.c.run_id == filters.run_id)
        if filters.type is not None:
            query = query.where(events.c.type == filters.type.value)
        if filters.state is not None:
            query = query.where(events.c.state == filters.state.value)
        if cursor is not None:
            after_at, after_id = decode_cursor(cursor)
            query = query.where(
                (events.c.created_at < after_at)
                | ((events.c.created_at == after_at) & (events.c.id < after_id))
            )
        query = query.order_by(events.c.created_at.desc(), events.c.id.desc()).limit(limit + 1)
        with self.db.read() as conn:
            found = [_event(r) for r in conn.execute(query)]
        page, more = found[:limit], len(found) > limit
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
        return page, next_cursor
