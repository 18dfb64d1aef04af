"""Idempotency-Key answers (DESIGN section 9): the first answer to a key, per principal.

Guarantees (each held by the table's primary key, not only by the Python here):
- One request at a time holds a (principal, key): `begin` inserts the
  in-progress row in its own transaction, before the request runs; a
  concurrent request with the same key loses that insert (a unique-key
  violation) and is told the key is in progress.
- `finish` and `abandon` touch only the row their own request inserted
  (matched on its `created_at`), so a request that outlived its row never
  overwrites the answer of the one that took the key over.
- A row older than the TTL is ignored: `begin` deletes it before inserting,
  and all expired rows are purged in bounded batches, at most once a minute
  per process while there is no backlog (the created_at index finds them).
- A row still in progress that its holder stopped touching (`touch`, every
  TOUCH_EVERY_S while the request runs) for STALE_S died with its server: the
  next request with that key takes it over instead of waiting for the TTL.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, delete, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from service.store.database import Database
from service.store.tables import idempotency_keys as keys

TOUCH_EVERY_S = 30.0
"""How often a request still running refreshes its in-progress row."""
STALE_S = 120.0
"""An in-progress row untouched this long is taken over (its server died mid-request)."""
PURGE_EVERY_S = 60.0
PURGE_BATCH = 500

# Statements built once. An UPDATE without .values() sets the columns named by
# the parameters; the match_* parameters are its WHERE clause (as in transaction.py).
_THIS_KEY = and_(
    keys.c.principal == bindparam("match_principal"), keys.c.key == bindparam("match_key")
)
_HELD = and_(_THIS_KEY, keys.c.status_code.is_(None), keys.c.created_at == bindparam("match_since"))
_SELECT = select(keys).where(_THIS_KEY)
_INSERT = insert(keys)
_DELETE_DEAD = delete(keys).where(
    _THIS_KEY,
    or_(
        keys.c.created_at < bindparam("expired"),
        and_(keys.c.status_code.is_(None), keys.c.created_at < bindparam("stale")),
    ),
)
_FINISH = update(keys).where(_HELD)
_TOUCH = update(keys).where(_HELD)
_ABANDON = delete(keys).where(_HELD)
_PURGE = delete(keys).where(
    tuple_(keys.c.principal, keys.c.key).in_(
        select(keys.c.principal, keys.c.key)
        .where(keys.c.created_at < bindparam("expired"))
        .order_by(keys.c.created_at)
        .limit(PURGE_BATCH)
    )
)


@dataclass(frozen=True)
class Held:
    """This request holds the key: run it, then `finish` (or `abandon`) with this."""

    principal: str
    key: str
    since: datetime


@dataclass(frozen=True)
class Answered:
    """The first answer to the key, to be replayed."""

    status_code: int
    content_type: str | None
    body: bytes


class Refusal(enum.Enum):
    IN_PROGRESS = "in_progress"
    """Another request with this key has not been answered yet."""
    REUSED = "reused"
    """The key was first used with another request (method, path or body)."""


Begun = Held | Answered | Refusal


class IdempotencyStore:
    """The remembered answers, written with lighter commits (Database.write(durable=False)).

    A move's own commit is durable, and it flushes the key taken just before it;
    the answer stored just after reaches the disk with the next durable commit.
    Only a power loss in that instant can forget an answer, and then the key
    looks abandoned (stale) and a retry runs again: the kernel refuses a move made
    twice (409). Waiting for the disk three times per POST instead of once cost
    more than a lost answer ever would.
    """

    def __init__(self, db: Database, ttl_s: int) -> None:
        self.db = db
        self.ttl = timedelta(seconds=ttl_s)
        self._next_purge: datetime | None = None
        self._purging = threading.Lock()

    def begin(self, principal: str, key: str, fingerprint: str, now: datetime) -> Begun:
        """Take the key for this request, or say why not (its first answer, or a refusal)."""
        this = {"match_principal": principal, "match_key": key}
        dead = {"expired": now - self.ttl, "stale": now - timedelta(seconds=STALE_S)}
        for _ in range(3):  # lost to a holder that gave up (5xx, stale) between two reads
            try:
                with self.db.write(durable=False) as conn:
                    conn.execute(_DELETE_DEAD, {**this, **dead})
                    conn.execute(
                        _INSERT,
                        {
                            "principal": principal,
                            "key": key,
                            "fingerprint": fingerprint,
                            "created_at": now,
                        },
                    )
            except IntegrityError:
                pass  # another request holds the key, or answered it
            else:
                self.purge_expired(now)
                return Held(principal, key, now)
            with self.db.read() as conn:
                row = conn.execute(_SELECT, this).first()
            if row is None or row.created_at < dead["expired"]:
                continue
            if row.fingerprint != fingerprint:
                return Refusal.REUSED
            if row.status_code is None:
                if row.created_at < dead["stale"]:
                    continue
                return Refusal.IN_PROGRESS
            return Answered(row.status_code, row.content_type, bytes(row.body or b""))
        return Refusal.IN_PROGRESS

    def finish(self, held: Held, status_code: int, content_type: str | None, body: bytes) -> bool:
        """Store the answer of the request that holds the key; False if it lost the key."""
        with self.db.write(durable=False) as conn:
            result = conn.execute(
                _FINISH,
                {
                    **_held(held),
                    "status_code": status_code,
                    "content_type": content_type,
                    "body": body,
                },
            )
        return result.rowcount == 1

    def abandon(self, held: Held) -> None:
        """Forget the key (its request failed with a 5xx): a retry with it runs again."""
        with self.db.write(durable=False) as conn:
            conn.execute(_ABANDON, _held(held))

    def touch(self, held: Held, now: datetime) -> Held | None:
        """Show the request still runs (it is not stale); None if it lost the key."""
        with self.db.write(durable=False) as conn:
            result = conn.execute(_TOUCH, {**_held(held), "created_at": now})
        return Held(held.principal, held.key, now) if result.rowcount == 1 else None

    def get(self, principal: str, key: str) -> Answered | Refusal | None:
        """What is stored for the key now (tests and operators): None when nothing."""
        with self.db.read() as conn:
            row = conn.execute(_SELECT, {"match_principal": principal, "match_key": key}).first()
        if row is None:
            return None
        if row.status_code is None:
            return Refusal.IN_PROGRESS
        return Answered(row.status_code, row.content_type, bytes(row.body or b""))

    def purge_expired(self, now: datetime) -> int:
        """Delete up to PURGE_BATCH expired rows, unless a purge ran less than a minute ago.

        A full batch means a backlog: the next call purges again at once.
        """
        if self._next_purge is not None and now < self._next_purge:
            return 0
        if not self._purging.acquire(blocking=False):
            return 0
        try:
            with self.db.write(durable=False) as conn:
                deleted = conn.execute(_PURGE, {"expired": now - self.ttl}).rowcount
            backlog = deleted >= PURGE_BATCH
            self._next_purge = now if backlog else now + timedelta(seconds=PURGE_EVERY_S)
            return int(deleted)
        finally:
            self._purging.release()


def _held(held: Held) -> dict[str, object]:
    return {"match_principal": held.principal, "match_key": held.key, "match_since": held.since}
