"""`rok runs …` against a server with ROK_AUTH=required: --key or ROK_API_KEY, exit 4 if refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.model.phases import utc_now
from service.store.database import Database
from service.store.keys import KeyStore
from service.store.migrations import upgrade
from tests.cli.conftest import SERVER_ENV, rok, rok_here
from tests.support.databases import sqlite_url
from tests.support.server import ServerProcess, running_server


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    """A server that needs a key, and a key of tenant acme that may only read."""
    url = sqlite_url(tmp_path)
    upgrade(url)
    database = Database(url, pool_size=1)
    try:
        _, reader = KeyStore(database).create("acme", ["runs:read"], "reader", utc_now())
    finally:
        database.dispose()
    with running_server(url, {**SERVER_ENV, "ROK_AUTH": "required"}) as server:
        yield server, reader


def test_a_key_is_sent_and_a_refusal_exits_4_with_the_service_detail(
    guarded: tuple[ServerProcess, str],
) -> None:
    server, reader = guarded
    url = server.base_url
    run = "00000000-0000-4000-8000-000000000000"

    from_env = rok("runs", "ls", "--json", ROK_URL=url, ROK_API_KEY=reader)
    from_option = rok_here("runs", "ls", "--json", "--url", url, "--key", reader)
    keyless = rok_here("runs", "ls", "--url", url)
    unknown = rok_here("runs", "ls", "--key", "rok_unknown_key", "--url", url)
    not_allowed = rok_here("runs", "fail", run, "--reason", "x", "--url", url, "--key", reader)

    assert (from_env.returncode, json.loads(from_env.stdout)) == (0, [])
    assert from_option.returncode == 0, from_option.stderr
    assert keyless.returncode == 4
    assert keyless.stderr.startswith("rok: GET /runs: 401 this endpoint needs an API key")
    assert unknown.returncode == 4
    assert "401 the API key is unknown or revoked" in unknown.stderr
    assert not_allowed.returncode == 4
    assert f"POST /runs/{run}/fail: 403 " in not_allowed.stderr
