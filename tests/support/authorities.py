"""Authorities for tests: one opened on a database URL, and one that checks its runs on close."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from service.authority import Authority
from service.config import Settings
from tests.support.invariants import check_every_run
from tests.support.owed import assert_owed_index_exact

# short, so a test that lets a governance check time out does not wait long
GOVERNANCE_TIMEOUT_MS = 200


def open_authority(url: str, **settings: Any) -> Authority:
    """An Authority on `url` with the tests' short governance timeout; the caller closes it."""
    fields: dict[str, Any] = {"governance_timeout_ms": GOVERNANCE_TIMEOUT_MS, **settings}
    return Authority(Settings(database_url=url, **fields))


@contextlib.contextmanager
def checked_authority(url: str, **settings: Any) -> Iterator[Authority]:
    """An Authority on `url`; when the block ends cleanly, every run it left must be valid
    and the owed feed's index must list exactly what those runs still owe."""
    current = open_authority(url, **settings)
    try:
        yield current
        check_every_run(current.store)
        assert_owed_index_exact(current.store)  # the owed feed's index, run by run
    finally:
        current.close()
