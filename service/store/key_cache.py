"""A short-lived memory of keys that authenticated, so most requests read no key row.

Every request proves its key (DESIGN section 9); reading the key's row costs a
trip to a pool thread and a read transaction, about a tenth of a lifecycle
move's CPU. A key that authenticated is remembered for ROK_KEY_CACHE_MS
(default 1000 ms; 0 turns the memory off), under the SHA-256 of the whole
presented text, never the text itself:

- a key revoked through this process (KeyStore.revoke) is forgotten at once;
- a key revoked elsewhere (`rok keys revoke`, another replica) is refused
  within ROK_KEY_CACHE_MS, the price of not reading it on every request;
- a refused key is never remembered, so a new key works on its first request
  and guessing fills nothing;
- the memory is bounded (MAX_KEYS): when full it starts over, which costs
  one read per live key, not a wrong answer.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

MAX_KEYS = 1024

Key = TypeVar("Key")


@dataclass(frozen=True)
class _Entry(Generic[Key]):
    key: Key
    key_id: str
    until: float


class KeyCache(Generic[Key]):
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[bytes, _Entry[Key]] = {}
        self._lock = threading.Lock()

    def get(self, presented: str) -> Key | None:
        if self.ttl_s <= 0:
            return None
        entry = self._entries.get(_fingerprint(presented))
        if entry is None or entry.until <= self._clock():
            return None
        return entry.key

    def remember(self, presented: str, key: Key, key_id: str) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= MAX_KEYS:
                self._entries.clear()
            entry = _Entry(key, key_id, self._clock() + self.ttl_s)
            self._entries[_fingerprint(presented)] = entry

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._entries = {f: e for f, e in self._entries.items() if e.key_id != key_id}


def _fingerprint(presented: str) -> bytes:
    return hashlib.sha256(presented.encode()).digest()
