"""Kernel fixtures: run factories over the shared `authority`, and the same with RAC off."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.authority import Authority
from tests.support.authorities import checked_authority
from tests.support.runs import RunFactory


@pytest.fixture
def rac_off_authority(migrated_url: str) -> Iterator[Authority]:
    """Like `authority`, with RAC_ENABLED=false: runs get no contract."""
    with checked_authority(migrated_url, rac_enabled=False) as current:
        yield current


@pytest.fixture
def runs(authority: Authority) -> RunFactory:
    return RunFactory(authority)


@pytest.fixture
def rac_off_runs(rac_off_authority: Authority) -> RunFactory:
    return RunFactory(rac_off_authority)
