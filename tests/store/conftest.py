"""Store fixtures: a RunStore on a freshly migrated database, and a NewRun builder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import pytest

from service.model.audit import default_contract
from service.model.phases import utc_now
from service.store.database import Database
from service.store.runs import NewRun, RunStore
from service.store.signals import Signals


@pytest.fixture
def store(migrated_url: str) -> Iterator[RunStore]:
    current = RunStore(Database(migrated_url), Signals())
    try:
        yield current
    finally:
        current.db.dispose()


DEFAULT_CONTRACT = default_contract(30_000, 5_000)


def new_run(
    run_id: str | None = None,
    *,
    created_at: datetime | None = None,
    contract: Sequence[tuple[str, str, int | None]] = DEFAULT_CONTRACT,
    scope: str | None = None,
    fingerprint: str | None = "f" * 64,
    **fields: Any,
) -> NewRun:
    values: dict[str, Any] = {
        "tenant_id": None,
        "handler": None,
        "input": None,
        "run_timeout_ms": 30_000,
        "max_attempts": 1,
        "priority": 0,
        **fields,
    }
    return NewRun(
        id=run_id or str(uuid.uuid4()),
        contract=list(contract),
        idempotency_scope=scope,
        request_fingerprint=fingerprint,
        created_at=created_at or utc_now(),
        **values,
    )
