"""End-to-end fixtures: a real service process on a fresh migrated database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Api, RokService, rok_service


@pytest.fixture
def rok(migrated_url: str) -> Iterator[RokService]:
    with rok_service(migrated_url) as service:
        yield service


@pytest.fixture
def api(rok: RokService) -> Api:
    return rok.api
