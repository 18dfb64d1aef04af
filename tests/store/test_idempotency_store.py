"""IdempotencyStore, one suite on both backends: who holds a key, what is replayed, when a
key is forgotten. Time is passed in (`now`), never waited for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from service.model.phases import utc_now
from service.store.database import Database
from service.store.idempotency import (
    PURGE_BATCH,
    PURGE_EVERY_S,
    STALE_S,
    Answered,
    Held,
    IdempotencyStore,
    Refusal,
)
from service.store.tables import idempotency_keys
from tests.support.races import race

TTL_S = 3600
FP = "a" * 64
NOW = utc_now()


@pytest.fixture
def keys(migrated_url: str) -> Iterator[IdempotencyStore]:
    database = Database(migrated_url)
    try:
        yield IdempotencyStore(database, TTL_S)
    finally:
        database.dispose()


def rows(store: IdempotencyStore) -> int:
    with store.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(idempotency_keys)).scalar_one())


def later(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def held(store: IdempotencyStore, key: str, fingerprint: str = FP, at: float = 0) -> Held:
    begun = store.begin("p", key, fingerprint, NOW + later(at))
    assert isinstance(begun, Held), begun
    return begun


def test_the_first_request_holds_the_key_and_its_answer_is_replayed(
    keys: IdempotencyStore,
) -> None:
    first = held(keys, "k")
    assert keys.begin("p", "k", FP, NOW) is Refusal.IN_PROGRESS
    assert keys.begin("p", "k", "b" * 64, NOW) is Refusal.REUSED
    assert keys.finish(first, 201, "application/json", b'{"id": 1}')
    answer = Answered(201, "application/json", b'{"id": 1}')
    assert keys.begin("p", "k", FP, NOW + later(1)) == answer
    assert keys.begin("p", "k", "b" * 64, NOW) is Refusal.REUSED
    assert keys.begin("other principal", "k", "b" * 64, NOW) != answer  # its own key
    assert keys.get("p", "k") == answer


def test_an_abandoned_key_runs_again(keys: IdempotencyStore) -> None:
    keys.abandon(held(keys, "k"))
    assert keys.get("p", "k") is None
    again = held(keys, "k")
    assert keys.finish(again, 200, None, b"")
    assert keys.begin("p", "k", FP, NOW) == Answered(200, None, b"")


def test_a_request_that_lost_its_key_stores_nothing(keys: IdempotencyStore) -> None:
    """A holder gone stale is taken over; its late answer must not replace the new one's."""
    old = held(keys, "k")
    new = held(keys, "k", at=STALE_S + 1)
    assert not keys.finish(old, 500, None, b"late")
    keys.abandon(old)  # a no-op: the row is the new holder's
    assert keys.touch(old, NOW + later(STALE_S + 2)) is None
    assert keys.finish(new, 201, None, b"new")
    assert keys.get("p", "k") == Answered(201, None, b"new")


def test_a_touched_request_is_never_stale(keys: IdempotencyStore) -> None:
    holder = held(keys, "k")
    for step in range(1, 4):  # a long request: touched every STALE_S / 2
        touched = keys.touch(holder, NOW + later(step * STALE_S / 2))
        assert touched is not None
        holder = touched
    assert keys.begin("p", "k", FP, NOW + later(2 * STALE_S)) is Refusal.IN_PROGRESS
    assert keys.finish(holder, 200, None, b"done")
    assert keys.begin("p", "k", FP, NOW + later(2 * STALE_S)) == Answered(200, None, b"done")


def test_a_key_is_forgotten_after_the_ttl(keys: IdempotencyStore) -> None:
    keys.finish(held(keys, "k"), 201, None, b"first")
    assert keys.begin("p", "k", FP, NOW + later(TTL_S - 1)) == Answered(201, None, b"first")
    # past the TTL: neither replayed nor refused for another body; the new request holds it
    renewed = keys.begin("p", "k", "b" * 64, NOW + later(TTL_S + 1))
    assert isinstance(renewed, Held)
    assert rows(keys) == 1


def insert_rows(store: IdempotencyStore, names: list[str], at: float) -> None:
    with store.db.write() as conn:
        conn.execute(
            idempotency_keys.insert(),
            [
                {"principal": "p", "key": name, "fingerprint": FP, "created_at": NOW + later(at)}
                for name in names
            ],
        )


def test_expired_keys_are_purged_in_batches_at_most_once_a_minute(
    keys: IdempotencyStore,
) -> None:
    insert_rows(keys, [f"old-{i}" for i in range(PURGE_BATCH + 10)], at=0)
    insert_rows(keys, ["fresh"], at=TTL_S)
    purge_at = NOW + later(TTL_S + 1)
    assert keys.purge_expired(purge_at) == PURGE_BATCH
    assert keys.purge_expired(purge_at) == 10  # the batch was full: the backlog goes on
    assert rows(keys) == 1  # the fresh one
    # no backlog: the next purge waits a minute, however many keys expire meanwhile
    insert_rows(keys, ["expired since"], at=1)
    assert keys.purge_expired(purge_at + later(PURGE_EVERY_S - 1)) == 0
    assert rows(keys) == 2
    assert keys.purge_expired(purge_at + later(PURGE_EVERY_S)) == 1
    assert keys.get("p", "fresh") is Refusal.IN_PROGRESS


def test_requests_racing_with_one_key_one_holds_it(keys: IdempotencyStore) -> None:
    outcomes = race([lambda: keys.begin("p", "k", FP, NOW) for _ in range(8)])
    begun = [value for status, value in outcomes if status == "ok"]
    assert len(begun) == 8, outcomes
    assert sum(isinstance(b, Held) for b in begun) == 1
    assert begun.count(Refusal.IN_PROGRESS) == 7
