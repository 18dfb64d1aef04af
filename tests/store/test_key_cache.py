"""The memory of keys that authenticated (service.store.key_cache), on both backends:
believed for ROK_KEY_CACHE_MS, forgotten at once when revoked here, never holding a refusal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.model.phases import utc_now
from service.store.database import Database
from service.store.key_cache import MAX_KEYS, KeyCache
from service.store.keys import KeyStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def database(migrated_url: str) -> Iterator[Database]:
    current = Database(migrated_url)
    try:
        yield current
    finally:
        current.dispose()


def cached_store(database: Database, clock: Clock, ttl_s: float = 1.0) -> KeyStore:
    keys = KeyStore(database, ttl_s)
    keys.cache = KeyCache(ttl_s, clock)
    return keys


def test_a_key_is_believed_for_the_ttl_then_read_again(database: Database) -> None:
    clock = Clock()
    keys = cached_store(database, clock)
    elsewhere = KeyStore(database)  # another process: `rok keys revoke`, another replica
    key, secret = keys.create("acme", ["runs:read"], "k", utc_now())
    assert keys.cached(secret) is None, "nothing is believed before it authenticated"
    assert keys.authenticate(secret) == key
    assert keys.cached(secret) == key
    elsewhere.revoke(key.id, utc_now())
    clock.now += 0.5
    assert keys.authenticate(secret) == key, "revoked elsewhere: believed until the ttl"
    clock.now += 0.6
    assert keys.cached(secret) is None
    assert keys.authenticate(secret) is None, "past the ttl the row is read: revoked"


def test_a_key_revoked_through_this_store_is_refused_at_once(database: Database) -> None:
    keys = cached_store(database, Clock())
    key, secret = keys.create("acme", ["runs:read"], "k", utc_now())
    other, other_secret = keys.create("acme", ["runs:read"], "other", utc_now())
    assert keys.authenticate(secret) == key and keys.authenticate(other_secret) == other
    keys.revoke(key.id, utc_now())
    assert keys.cached(secret) is None and keys.authenticate(secret) is None
    assert keys.cached(other_secret) == other, "only the revoked key is forgotten"


def test_refusals_are_never_remembered(database: Database) -> None:
    keys = cached_store(database, Clock())
    key, secret = keys.create("acme", ["runs:read"], "k", utc_now())
    wrong = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    for presented in (wrong, "rok_0000000000000000_" + "x" * 43, "not a key"):
        assert keys.authenticate(presented) is None
        assert keys.cached(presented) is None
    assert keys.authenticate(secret) == key, "the real key still works"


def test_a_ttl_of_zero_reads_every_time(database: Database) -> None:
    keys = cached_store(database, Clock(), ttl_s=0.0)
    key, secret = keys.create("acme", ["runs:read"], "k", utc_now())
    assert keys.authenticate(secret) == key
    assert keys.cached(secret) is None
    KeyStore(database).revoke(key.id, utc_now())
    assert keys.authenticate(secret) is None


def test_the_memory_is_bounded() -> None:
    cache: KeyCache[str] = KeyCache(60.0, Clock())
    for n in range(MAX_KEYS + 10):
        cache.remember(f"key-{n}", f"k{n}", f"id{n}")
    assert len(cache._entries) <= MAX_KEYS
    assert cache.get(f"key-{MAX_KEYS + 9}") == f"k{MAX_KEYS + 9}", "the newest is kept"
