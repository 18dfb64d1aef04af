"""Runs with concurrency keys, claimed and finished through the store and the kernel."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from service.authority import Authority
from service.kernel import RunOrchestrationKernel, RunSpec
from service.model.phases import RunPhase
from service.store.tables import concurrency_limits


def create_run(
    authority: Authority,
    tenant: str | None = None,
    keys: Sequence[str] = (),
    handler: str | None = None,
    priority: int = 0,
    max_attempts: int = 1,
) -> str:
    spec = RunSpec(
        tenant_id=tenant,
        handler=handler,
        priority=priority,
        max_attempts=max_attempts,
        concurrency_keys=tuple(keys),
    )
    kernel = RunOrchestrationKernel(
        str(uuid.uuid4()), authority.store, authority.settings, spec=spec
    )
    assert kernel.declare_expectations() is True
    return kernel.run_id


def claim(
    authority: Authority,
    worker: str = "w",
    lease_ms: int = 60_000,
    handlers: Sequence[str] | None = None,
    now: datetime | None = None,
    tenant: str | None = None,
) -> tuple[str, str] | None:
    """(run id, lease token) of the run claimed, or None."""
    got = authority.leases.claim(
        worker, lease_ms, handlers, now or authority.clock(), tenant_id=tenant
    )
    return None if got is None else (got[0].id, got[1].token)


def complete(authority: Authority, run_id: str, token: str) -> None:
    """Drive a claimed run to COMPLETED, as a worker would, ending its lease."""
    kernel = authority.kernel(run_id, token)
    kernel.authorize("GRANTED", begin_execution=True)
    kernel.execution_complete(True)
    kernel.record_governance_check(finalize=True)
    assert kernel.phase is RunPhase.COMPLETED


def in_use(authority: Authority) -> dict[str, int]:
    """Every key's slots in use, read straight from the table."""
    table = concurrency_limits.c
    with authority.database.read() as conn:
        return {row.key: row.in_use for row in conn.execute(select(table.key, table.in_use))}


def busy(authority: Authority) -> dict[str, int]:
    """The keys with slots in use (what a test expects back at zero)."""
    return {key: count for key, count in in_use(authority).items() if count}


def assert_counts_match_leases(authority: Authority) -> None:
    """Every key's in_use is the number of leased runs holding it, recounted from the runs."""
    from collections import Counter

    from service.store.limits import tenant_key
    from service.store.tables import runs

    held: Counter[str] = Counter()
    leased = select(runs.c.tenant_id, runs.c.concurrency_keys).where(
        runs.c.lease_token.is_not(None)
    )
    with authority.database.read() as conn:
        for row in conn.execute(leased):
            held.update([tenant_key(row.tenant_id), *(row.concurrency_keys or [])])
    assert busy(authority) == dict(held)
