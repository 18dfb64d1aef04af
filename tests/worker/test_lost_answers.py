"""Every answer lost once: whole governed runs, resent, done once.

A transport between the clients and the service performs each POST and then
drops its answer (a connection reset) the first time it sees that request
(its Idempotency-Key, or for a POST sent without one, its path and body); the
client sends the request again. Creates and acks are replayed by their key;
moves, claims and heartbeats go without one and are refused or returned as done
(phase machine, lease, claim_id), then read back. The service runs in
this process (the app over httpx's ASGI transport), with ROK_AUTH=required:
one key creates the runs, the pool's key claims, moves and acks them. What
is counted is what was done: one run per create, one history entry per move,
one ack per (domain, action).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from service.api.app import create_app
from service.api.idempotency import REPLAYED_HEADER
from service.authority import Authority
from service.config import Settings
from service.domains import IncidentsDomain, PoliciesDomain, PolicySet, TracesDomain
from service.model.phases import RunPhase, utc_now
from service.store.keys import RUNS_READ, RUNS_WRITE, WORKER
from service.store.runs import RunFilter
from service.worker.client import RokClient
from service.worker.context import RunContext
from service.worker.pool import WorkerPool
from service.worker.retries import IDEMPOTENCY_HEADER, Backoff

RUNS = 3
GOVERNED_PATH = [
    RunPhase.AUTHORIZED,
    RunPhase.EXECUTING,
    RunPhase.GOVERNANCE_CHECK,
    RunPhase.FINALIZING,
    RunPhase.COMPLETED,
]
PAIRS = {
    ("incidents", "create_incident"),
    ("policies", "evaluate_policy"),
    ("logs", "start_trace"),
    ("logs", "complete_trace"),
    ("orchestrator", "finalize_run"),
}
EXACTLY_ONCE_BY_THEMSELVES = {
    "claim",
    "heartbeat",
    "authorize",
    "begin-execution",
    "execution-complete",
    "governance-check",
    "finalize",
}
POOL_SCOPES = [WORKER, RUNS_READ, "acks:incidents", "acks:policies", "acks:logs"]


class LosesEachAnswerOnce(httpx.AsyncBaseTransport):
    """Performs every request; the first answer to each POST (by its key) never arrives."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lost: set[str] = set()
        self.replayed: Counter[str] = Counter()
        self.unkeyed: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method != "POST":
            return response
        await response.aread()
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:  # lost all the same: a move must survive it by its own guards
            self.unkeyed[_step(request)] += 1
            key = f"{request.url.path} {request.content.decode()}"
        if response.headers.get(REPLAYED_HEADER) == "true":
            self.replayed[_step(request)] += 1
        if key not in self.lost:
            self.lost.add(key)
            raise httpx.ReadError("connection reset after the service answered", request=request)
        return response


def _step(request: httpx.Request) -> str:
    return request.url.path.rsplit("/", 1)[-1]


def job(ctx: RunContext) -> str:
    ctx.step("work", n=1)
    return "done"


@pytest.fixture
def authority(migrated_url: str) -> Iterator[Authority]:
    current = Authority(Settings(database_url=migrated_url, auth="required"))
    try:
        yield current
    finally:
        current.close()


def test_every_answer_lost_once_and_nothing_is_done_twice(authority: Authority) -> None:
    _, creator_key = authority.keys.create("acme", [RUNS_WRITE, RUNS_READ], "creator", utc_now())
    _, pool_key = authority.keys.create("acme", POOL_SCOPES, "pool", utc_now())
    app = create_app(authority=authority, sweep=False)
    lossy = LosesEachAnswerOnce(httpx.ASGITransport(app=app))
    url = "http://rok.test"

    async def create_runs() -> list[str]:
        async with RokClient(
            url, transport=lossy, api_key=creator_key, backoff=Backoff(0.001, 0.01)
        ) as client:
            return [str((await client.create_run(handler="job"))["id"]) for _ in range(RUNS)]

    run_ids = asyncio.run(create_runs())
    assert len(set(run_ids)) == RUNS
    pool = WorkerPool(
        url,
        {"job": job},
        concurrency=2,
        domains=[
            PoliciesDomain(rules=PolicySet.from_mapping({}, "no rules")),
            TracesDomain(),
            IncidentsDomain(),
        ],
        lease_ms=10_000,
        claim_wait_ms=200,
        governance_timeout_ms=2_000,
        domain_timeout_ms=2_000,
        drain_timeout_s=2.0,
        api_key=pool_key,
        transport=lossy,
    )
    results = pool.run_until(RUNS, timeout_s=60)

    assert sorted(r.run_id for r in results) == sorted(run_ids)
    assert not any(r.lost for r in results)
    records, _ = authority.store.list(RunFilter(), 100, None)
    assert sorted(r.id for r in records) == sorted(run_ids), "a create was done twice"
    for record in records:
        moves = [entry.transition.to_phase for entry in record.history]
        assert moves == GOVERNED_PATH, f"run {record.id}: {moves}"
        pairs = [(a.domain, a.action) for a in record.acks]
        assert sorted(pairs) == sorted(PAIRS), f"run {record.id} acked twice or not at all"
        assert not any(a.late for a in record.acks)
    # only what the phase machine, the lease or a claim_id guards goes without a key
    assert set(lossy.unkeyed) <= EXACTLY_ONCE_BY_THEMSELVES, lossy.unkeyed
    assert lossy.unkeyed["claim"] >= RUNS, "the test lost no move's answer"
    # a create has no guard of its own: it was answered by the replay of its first answer
    # (a lost ack is found by the read back before the resend, see service.worker.retries)
    assert lossy.replayed["runs"] == RUNS
