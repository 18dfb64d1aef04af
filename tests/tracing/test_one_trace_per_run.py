"""One trace per run: the service, its database calls, the worker and the domains.

The service runs in this process (the app over httpx's ASGI transport) with an
SDK tracer provider that keeps every finished span in memory; the worker pool
and the traces domain use the same provider. Both backends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service.api.app import create_app
from service.authority import Authority
from service.config import Settings
from service.domains import IncidentsDomain, PoliciesDomain, PolicySet, TracesDomain
from service.telemetry import OFF, Tracing
from service.worker.client import RokClient
from service.worker.context import RunContext
from service.worker.pool import WorkerPool

URL = "http://127.0.0.1"  # auth off: the service answers loopback names only
SENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exported: InMemorySpanExporter) -> Iterator[Tracing]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    yield Tracing(provider)
    provider.shutdown()


@pytest.fixture
def authority(migrated_url: str) -> Iterator[Authority]:
    current = Authority(Settings(database_url=migrated_url, auth="off"))
    try:
        yield current
    finally:
        current.close()


def job(ctx: RunContext) -> str:
    ctx.step("think", depth=1)
    return "done"


def create_run(transport: httpx.AsyncBaseTransport, **headers: str) -> dict[str, Any]:
    async def create() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=transport, base_url=URL) as client:
            answer = await client.post("/runs", json={"handler": "job"}, headers=headers)
            assert answer.status_code == 201, answer.text
            run: dict[str, Any] = answer.json()
            return run

    return asyncio.run(create())


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def test_every_span_of_a_run_shares_the_run_s_trace(
    authority: Authority, tracing: Tracing, exported: InMemorySpanExporter
) -> None:
    assert tracing.provider is not None
    transport = httpx.ASGITransport(
        app=create_app(authority=authority, sweep=False, tracing=tracing)
    )
    run = create_run(transport)
    traceparent = run["traceparent"]
    assert traceparent is not None
    run_trace = traceparent.split("-")[1]

    pool = WorkerPool(
        URL,
        {"job": job},
        concurrency=1,
        domains=[
            PoliciesDomain(rules=PolicySet.from_mapping({}, "no rules")),
            TracesDomain(tracing.provider),
            IncidentsDomain(),
        ],
        claim_wait_ms=200,
        governance_timeout_ms=2_000,
        drain_timeout_s=2.0,
        transport=transport,
        tracing=tracing,
    )
    [result] = pool.run_until(1, timeout_s=60)
    assert result.run_id == run["id"] and result.phase == "COMPLETED"

    async def read() -> dict[str, Any]:
        async with RokClient(URL, transport=transport) as client:
            return await client.get_run(run["id"])

    spans = exported.get_finished_spans()  # the worker's, before this test reads the run
    finished = asyncio.run(read())
    assert finished["traceparent"] == traceparent  # GET shows what the run keeps
    about_run = [
        s
        for s in spans
        if "{run_id}" in str((s.attributes or {}).get("http.route", ""))
        or s.name in ("work job", "run job", "think")
    ]
    routes = {str((s.attributes or {}).get("http.route")) for s in about_run}
    assert {"/runs/{run_id}/authorize", "/runs/{run_id}/governance-check"} <= routes
    assert {"work job", "run job", "think"} <= {s.name for s in about_run}
    assert {trace_id(s) for s in about_run} == {run_trace}
    # the database's spans of those requests, and the worker's client spans, too
    in_trace = [s for s in spans if trace_id(s) == run_trace]
    assert any((s.attributes or {}).get("db.system") for s in in_trace)
    client_calls = [s for s in in_trace if s.kind is SpanKind.CLIENT and s.name.startswith("POST")]
    assert client_calls, "the worker's httpx calls are spans of the run's trace"
    # the traces domain acked the same trace id
    [trace_ack] = [a for a in finished["acks"] if a["action"] == "complete_trace"]
    assert trace_ack["result_id"] == run_trace


def test_a_run_joins_the_trace_of_the_request_that_created_it(
    authority: Authority, tracing: Tracing
) -> None:
    transport = httpx.ASGITransport(
        app=create_app(authority=authority, sweep=False, tracing=tracing)
    )
    run = create_run(transport, traceparent=SENT)
    kept = run["traceparent"]
    assert kept.split("-")[1] == SENT.split("-")[1]  # the caller's trace
    assert kept.split("-")[2] != SENT.split("-")[2]  # under the service's span for the request


@pytest.mark.parametrize(("sent", "kept"), [(SENT, SENT), ("00-nonsense", None), (None, None)])
def test_without_tracing_a_run_keeps_the_caller_s_traceparent_if_valid(
    authority: Authority, sent: str | None, kept: str | None
) -> None:
    app = create_app(authority=authority, sweep=False, tracing=OFF)
    assert not any("OpenTelemetry" in m.cls.__name__ for m in app.user_middleware)  # type: ignore[attr-defined]
    headers = {"traceparent": sent} if sent else {}
    run = create_run(httpx.ASGITransport(app=app), **headers)
    assert run["traceparent"] == kept
