"""Fixtures shared by every test folder.

Databases: `database_url` is a fresh, empty database, once on SQLite and once
on PostgreSQL (marked `postgres`; skipped without ROK_TEST_POSTGRES_URL unless
ROK_REQUIRE_POSTGRES=1). `migrated_url` is the same, upgraded to head.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.store.migrations import upgrade
from tests.support.databases import fresh_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url
