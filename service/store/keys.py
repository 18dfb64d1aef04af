"""API keys: random, shown once, stored only as a hash, compared in constant time.

A key reads `rok_<id>_<secret>`: the id finds the row with one primary-key
read (no scan over every key's hash), the secret (256 random bits) is checked
against its SHA-256 with `hmac.compare_digest`. A slow password hash would buy
nothing here: the secret is random, not something a person chose, so there is
no dictionary to slow down; a plain digest keeps every request's check cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from service.errors import InvalidRequest, RokError
from service.store.database import Database
from service.store.key_cache import KeyCache
from service.store.tables import api_keys

KEY_PREFIX = "rok_"
_KEY_SHAPE = re.compile(r"^rok_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")

ADMIN = "admin"
RUNS_READ = "runs:read"
RUNS_WRITE = "runs:write"
WORKER = "worker"
ACKS_PREFIX = "acks:"
FIXED_SCOPES = (RUNS_READ, RUNS_WRITE, WORKER, ADMIN)
_DOMAIN = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class KeyNotFound(RokError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"no API key with id {key_id!r}")
        self.key_id = key_id


@dataclass(frozen=True)
class ApiKey:
    """What is stored of a key (never its secret)."""

    id: str
    tenant_id: str
    name: str | None
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes, or InvalidRequest naming the one that is not a scope."""
    checked = set()
    for scope in scopes:
        if scope in FIXED_SCOPES or (
            scope.startswith(ACKS_PREFIX) and _DOMAIN.match(scope.removeprefix(ACKS_PREFIX))
        ):
            checked.add(scope)
            continue
        raise InvalidRequest(
            f"{scope!r} is not a scope; use {', '.join(FIXED_SCOPES)} or acks:<domain>"
        )
    if not checked:
        raise InvalidRequest("a key needs at least one scope")
    return frozenset(checked)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, db: Database, cache_ttl_s: float = 0.0) -> None:
        self.db = db
        # keys that authenticated lately (service.store.key_cache); off by default
        self.cache: KeyCache[ApiKey] = KeyCache(cache_ttl_s)

    def create(
        self, tenant_id: str, scopes: Iterable[str], name: str | None, now: datetime
    ) -> tuple[ApiKey, str]:
        """A new key and its full text, which is never stored and cannot be shown again."""
        if not tenant_id or len(tenant_id) > 200:
            raise InvalidRequest("a key needs a tenant (1 to 200 characters)")
        checked = check_scopes(scopes)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)  # 256 bits
        with self.db.write() as conn:
            conn.execute(
                insert(api_keys).values(
                    id=key_id,
                    tenant_id=tenant_id,
                    name=name,
                    scopes=sorted(checked),
                    secret_hash=_digest(secret),
                    created_at=now,
                )
            )
        key = ApiKey(key_id, tenant_id, name, checked, now, None)
        return key, f"{KEY_PREFIX}{key_id}_{secret}"

    def cached(self, presented: str) -> ApiKey | None:
        """The key `presented` is, if it authenticated within the cache's time; else None
        (then `authenticate` reads it). Reads nothing: fit for the event loop."""
        return self.cache.get(presented)

    def authenticate(self, presented: str) -> ApiKey | None:
        """The live key `presented` is, or None (malformed, unknown, wrong secret, revoked)."""
        key = self.cached(presented)
        if key is None:
            key = self._read(presented)
            if key is not None:
                self.cache.remember(presented, key, key.id)
        return key

    def _read(self, presented: str) -> ApiKey | None:
        shape = _KEY_SHAPE.match(presented)
        if shape is None:
            return None
        key_id, secret = shape.groups()
        with self.db.read() as conn:
            row = conn.execute(_SELECT_KEY, {"key_id": key_id}).first()
        if row is None:
            # compare anyway, so an unknown id costs what a wrong secret costs
            hmac.compare_digest(_digest(secret), _digest(""))
            return None
        if not hmac.compare_digest(_digest(secret), row.secret_hash) or row.revoked_at:
            return None
        return _key(row)

    def list(self) -> list[ApiKey]:
        with self.db.read() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id))
            return [_key(row) for row in rows]

    def revoke(self, key_id: str, now: datetime) -> ApiKey:
        """Revoke the key: refused from the next request on (revoking again changes nothing)."""
        with self.db.write() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            row = conn.execute(_SELECT_KEY, {"key_id": key_id}).first()
        self.cache.forget(key_id)
        if row is None:
            raise KeyNotFound(key_id)
        return _key(row)


_SELECT_KEY = select(api_keys).where(api_keys.c.id == bindparam("key_id"))


def _key(row: Any) -> ApiKey:
    r = row._mapping
    return ApiKey(
        r["id"], r["tenant_id"], r["name"], frozenset(r["scopes"]), r["created_at"], r["revoked_at"]
    )
