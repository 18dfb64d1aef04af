"""Fixtures shared by every test folder.

Databases: `database_url` is a fresh, empty database, once on SQLite and once
on PostgreSQL (marked `postgres`; skipped without ROK_TEST_POSTGRES_URL unless
ROK_REQUIRE_POSTGRES=1). `migrated_url` is the same, upgraded to head.
`authority` is an Authority on it that checks every run it left at teardown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.authority import Authority
from service.store.migrations import upgrade
from tests.support.authorities import checked_authority
from tests.support.databases import fresh_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
def authority(migrated_url: str) -> Iterator[Authority]:
    """An Authority on the migrated database (short governance timeout); at teardown
    every run the test left must satisfy the invariants (tests.support.invariants)."""
    with checked_authority(migrated_url) as current:
        yield current
