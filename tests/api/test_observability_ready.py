"""/readyz turns 503 when the database is behind or unreachable, and 200 again by itself.

Unreachable is real: the app talks to PostgreSQL through a TCP relay on a
port this test owns; closing the relay (and every connection through it)
is a database that went away, reopening it on the same port is the database
coming back. Nothing is restarted in between.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from service.api.app import create_app
from service.authority import Authority
from service.config import Settings
from service.store.migrations import downgrade, head_revision, upgrade
from tests.api.conftest import LOCAL_BASE_URL
from tests.api.runs_api import expect
from tests.api.test_metrics import parse, value
from tests.support.databases import postgres_schema, postgres_server_url
from tests.support.server import free_port

PREVIOUS_REVISION = "0003"


def serve(authority: Authority) -> TestClient:
    return TestClient(create_app(authority=authority, sweep=False), base_url=LOCAL_BASE_URL)


def ready(http: TestClient) -> tuple[int, dict[str, Any]]:
    answer = http.get("/readyz")
    body: dict[str, Any] = answer.json()
    return answer.status_code, body


def test_readyz_is_503_while_the_schema_is_behind_the_code(migrated_url: str) -> None:
    authority = Authority(Settings(database_url=migrated_url, auth="off"))
    try:
        with TestClient(
            create_app(authority=authority, sweep=False), base_url=LOCAL_BASE_URL
        ) as http:
            assert ready(http) == (200, {"status": "ready", "schema_revision": head_revision()})
            authority.database.dispose()  # let the downgrade take its locks
            downgrade(migrated_url, PREVIOUS_REVISION)

            status, body = ready(http)
            assert status == 503
            assert body["status"] == "not_ready"
            assert body["schema_revision"] == PREVIOUS_REVISION
            assert f"at schema revision {PREVIOUS_REVISION}" in body["reason"]
            assert "rok db upgrade" in body["reason"]
            expect(http.get("/healthz"), 200)  # liveness is not readiness

            authority.database.dispose()
            downgrade(migrated_url, "base")
            status, body = ready(http)
            assert status == 503 and "has no rok schema" in body["reason"], body

            authority.database.dispose()
            upgrade(migrated_url)
            assert ready(http)[0] == 200
    finally:
        authority.close()


class TcpRelay:
    """Forwards 127.0.0.1:port to a target; `close` cuts every connection, `open` listens again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        self._spawn(self._accept, listener)

    def close(self) -> None:
        with self._lock:
            doomed = [s for s in (self._listener, *self._sockets) if s is not None]
            self._listener, self._sockets = None, []
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def relayed_postgres() -> Iterator[tuple[str, TcpRelay]]:
    """A migrated PostgreSQL schema, and its URL through a relay this test controls."""
    with postgres_schema(postgres_server_url()) as direct_url:
        upgrade(direct_url)
        direct = make_url(direct_url)
        relay = TcpRelay(direct.host or "127.0.0.1", direct.port or 5432)
        relay.open()
        try:
            relayed = direct.set(host="127.0.0.1", port=relay.port)
            yield relayed.render_as_string(hide_password=False), relay
        finally:
            relay.close()


@pytest.mark.postgres
def test_readyz_follows_an_unreachable_database_without_a_restart(
    relayed_postgres: tuple[str, TcpRelay],
) -> None:
    url, relay = relayed_postgres
    authority = Authority(Settings(database_url=url, auth="off"))
    try:
        with TestClient(
            create_app(authority=authority, sweep=False), base_url=LOCAL_BASE_URL
        ) as http:
            assert ready(http)[0] == 200

            relay.close()  # the database went away (its connections too)
            status, body = ready(http)
            assert status == 503, body
            assert body["status"] == "not_ready"
            assert body["reason"].startswith("the database does not answer: OperationalError")
            assert "password" not in body["reason"]
            expect(http.get("/healthz"), 200)  # liveness never asks the database
            scraped = parse(expect(http.get("/metrics"), 200).text)
            assert value(scraped, "rok_database_up") == 0  # counters still served
            assert ("rok_runs_by_phase", frozenset({("phase", "CREATED")})) not in scraped

            relay.open()  # it is back, on the same address
            assert ready(http) == (200, {"status": "ready", "schema_revision": head_revision()})
            scraped = parse(expect(http.get("/metrics"), 200).text)
            assert value(scraped, "rok_database_up") == 1
    finally:
        authority.close()
