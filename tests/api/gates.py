"""The app with its gates configured (idempotency, limits), for the tests of those gates.

`serving(url, **settings)` runs the app in this process on an Authority whose
clock the test moves (`Served.clock.advance`), so a key's TTL passes without
sleeping. With auth off (the default here) the client talks to a loopback
base URL, as AuthGate requires; with `auth="required"`, `Served.key(...)`
creates an API key and returns the headers that send it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.auth import ANONYMOUS_ID
from service.api.idempotency import HEADER, REPLAYED_HEADER
from service.authority import Authority
from service.config import Settings
from service.model.phases import utc_now
from service.store.idempotency import Answered, IdempotencyStore, Refusal
from tests.api.runs_api import RunsApi

LOOPBACK = "http://127.0.0.1"


@dataclass
class Clock:
    """Real time plus an offset the test moves forward."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return utc_now() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class Served:
    app: FastAPI
    http: TestClient
    authority: Authority
    clock: Clock
    api: RunsApi

    def post(
        self,
        path: str,
        body: Any = None,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        sent = {**(headers or {}), **({HEADER: key} if key is not None else {})}
        response: httpx.Response = self.http.post(path, json=body, headers=sent)
        return response

    @property
    def keys_store(self) -> IdempotencyStore:
        database = self.authority.database
        return IdempotencyStore(database, self.authority.settings.idempotency_ttl_s)

    def stored(self, key: str, principal: str = ANONYMOUS_ID) -> Answered | Refusal | None:
        """What the service remembers of `key` for `principal` (None: nothing)."""
        return self.keys_store.get(principal, key)

    def key(self, *scopes: str, tenant: str = "acme") -> tuple[str, dict[str, str]]:
        """A new API key: (its id, the headers that send it)."""
        created, secret = self.authority.keys.create(tenant, scopes, None, self.clock())
        return created.id, {"Authorization": f"Bearer {secret}"}


def replayed(response: httpx.Response) -> bool:
    return bool(response.headers.get(REPLAYED_HEADER) == "true")


@contextlib.contextmanager
def serving(url: str, *, raise_server_exceptions: bool = True, **settings: Any) -> Iterator[Served]:
    """The app on `url` (auth off unless `auth` is given), lifespan running, no sweeper."""
    options: dict[str, Any] = {"auth": "off", "governance_timeout_ms": 300, **settings}
    clock = Clock()
    authority = Authority(Settings(database_url=url, **options), clock=clock)
    try:
        app = create_app(authority=authority, sweep=False)
        base_url = LOOPBACK if options["auth"] == "off" else "http://rok.test"
        with TestClient(
            app, base_url=base_url, raise_server_exceptions=raise_server_exceptions
        ) as http:
            yield Served(app, http, authority, clock, RunsApi(http))
    finally:
        authority.close()
