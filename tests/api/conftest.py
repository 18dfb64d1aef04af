"""API fixtures: the app in-process (TestClient, lifespan included) and as a real server.

Every fixture that serves runs checks invariants 1 and 2 (DESIGN.md section 8)
on every run the test left behind, read back through the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.config import Settings
from service.store.migrations import upgrade
from tests.api.runs_api import RunsApi, assert_run_valid
from tests.support.databases import fresh_database
from tests.support.server import ServerProcess, running_server

GOVERNANCE_TIMEOUT_MS = 300
# with ROK_AUTH=off the service answers only requests addressed to a loopback name
LOCAL_BASE_URL = "http://127.0.0.1"


def check_every_run_as_served(api: RunsApi) -> None:
    """Invariants 1 and 2 on every run as the API serves it (JSON, tests.api.runs_api).

    The same invariants over stored records are tests.support.invariants.check_every_run;
    this one also checks the JSON against the documented RunOut contract.
    """
    for run in api.all_runs():
        assert_run_valid(run)


@pytest.fixture
def sqlite_migrated_url(tmp_path: Path) -> Iterator[str]:
    """A migrated SQLite database, for the tests that run on SQLite only."""
    with fresh_database("sqlite", tmp_path) as url:
        upgrade(url)
        yield url


def serve_in_process(
    url: str, check: bool = True, raise_server_exceptions: bool = True
) -> Iterator[TestClient]:
    """The app with auth off, as `make run` serves it: requests come from 127.0.0.1.

    Authentication itself is tested in tests/api/test_auth*.py with keys.
    """
    settings = Settings(database_url=url, governance_timeout_ms=GOVERNANCE_TIMEOUT_MS, auth="off")
    with TestClient(
        create_app(settings),
        base_url=LOCAL_BASE_URL,
        raise_server_exceptions=raise_server_exceptions,
    ) as client:
        yield client
        if check:
            check_every_run_as_served(RunsApi(client))


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    """The app in this process, lifespan running; both backends."""
    yield from serve_in_process(migrated_url)


@pytest.fixture
def raw_client(migrated_url: str) -> Iterator[TestClient]:
    """Like `client`, but a server error is a 500 response (as a real client sees it),
    and the teardown check is left to the test: for input that may break the server."""
    yield from serve_in_process(migrated_url, check=False, raise_server_exceptions=False)


@pytest.fixture
def api(client: TestClient) -> RunsApi:
    return RunsApi(client)


@pytest.fixture
def server(migrated_url: str) -> Iterator[ServerProcess]:
    """A real uvicorn server process on the test's database; both backends."""
    with running_server(migrated_url) as current:
        yield current
        with current.client() as http:
            check_every_run_as_served(RunsApi(http))
