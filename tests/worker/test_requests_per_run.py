"""What one governed run costs the service in requests, counted at the transport.

A success with no result is final before the service sees it, so the pool
sends its evidence first and then one execution-complete carrying the check
and finalize; a handler that returns a result reports it first (the service
may refuse it, which fails the execution), then its evidence, then the check.
Either way every move is in the history and every pair acked once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.api.app import create_app
from service.authority import Authority
from service.config import Settings
from service.domains import IncidentsDomain, PoliciesDomain, PolicySet, TracesDomain
from service.model.phases import RunPhase
from service.store.runs import RunFilter
from service.worker.client import RokClient
from service.worker.context import RunContext
from service.worker.pool import WorkerPool

RUNS = 3
GOVERNED_PATH = [
    RunPhase.AUTHORIZED,
    RunPhase.EXECUTING,
    RunPhase.GOVERNANCE_CHECK,
    RunPhase.FINALIZING,
    RunPhase.COMPLETED,
]


class Counting(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.steps: Counter[str] = Counter()
        self.minimal: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            step = request.url.path.rsplit("/", 1)[-1]
            self.steps[step] += 1
            if request.headers.get("prefer") == "return=minimal":
                self.minimal[step] += 1
        return await self.inner.handle_async_request(request)


@pytest.fixture
def authority(migrated_url: str) -> Iterator[Authority]:
    current = Authority(Settings(database_url=migrated_url, auth="off"))
    try:
        yield current
    finally:
        current.close()


def run_pool(authority: Authority, handler: Any) -> Counting:
    app = create_app(authority=authority, sweep=False)
    counting = Counting(httpx.ASGITransport(app=app, client=("127.0.0.1", 1234)))
    url = "http://127.0.0.1"

    async def create() -> None:
        async with RokClient(url, transport=counting) as client:
            for _ in range(RUNS):
                await client.create_run(handler="job")

    asyncio.run(create())
    pool = WorkerPool(
        url,
        {"job": handler},
        concurrency=2,
        domains=[
            PoliciesDomain(rules=PolicySet.from_mapping({}, "no rules")),
            TracesDomain(),
            IncidentsDomain(),
        ],
        claim_wait_ms=200,
        governance_timeout_ms=2_000,
        domain_timeout_ms=2_000,
        drain_timeout_s=2.0,
        transport=counting,
    )
    results = pool.run_until(RUNS, timeout_s=60)
    assert [r.phase for r in results] == ["COMPLETED"] * RUNS, [r.summary() for r in results]
    records, _ = authority.store.list(RunFilter(), 100, None)
    for record in records:
        assert [e.transition.to_phase for e in record.history] == GOVERNED_PATH
        pairs = [(a.domain, a.action) for a in record.acks]
        assert len(pairs) == len(set(pairs)) == 5, pairs
        assert record.row.governance_passed is True
    return counting


def test_a_success_without_a_result_ends_in_one_execution_complete(
    authority: Authority,
) -> None:
    def job(ctx: RunContext) -> None:
        ctx.step("work", n=1)

    counting = run_pool(authority, job)
    steps = counting.steps
    assert steps["execution-complete"] == RUNS
    assert steps["governance-check"] == steps["finalize"] == 0
    assert steps["authorize"] == RUNS
    # the moves before the last ask for the run's state alone; the last for the whole run
    assert counting.minimal["authorize"] == RUNS and counting.minimal["execution-complete"] == 0


def test_a_result_is_reported_before_the_evidence_and_the_check(authority: Authority) -> None:
    def job(ctx: RunContext) -> dict[str, str]:
        return {"summary": "done"}

    counting = run_pool(authority, job)
    steps = counting.steps
    assert steps["execution-complete"] == steps["governance-check"] == RUNS
    assert counting.minimal["execution-complete"] == RUNS
    runs, _ = authority.store.list(RunFilter(), 100, None)
    assert all(authority.store.get(r.id).row.control.result == {"summary": "done"} for r in runs)
