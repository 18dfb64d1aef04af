"""Traces: one span per step under a root span; the trace id survives a new attempt."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.domains.traces import TracesDomain
from service.telemetry import WORKER, tracing_from_env
from service.worker import Decision, Outcome, RunContext
from tests.worker.fakes import FakeAcks, make_context


def test_steps_become_child_spans_that_end_where_the_next_begins() -> None:
    ctx = make_context("agent")
    start = datetime(2030, 1, 1, tzinfo=UTC)
    ctx.started_at = start
    ctx.step("plan", depth=1)
    ctx.step("answer", tokens=[1, 2])
    ctx.ended_at = start + timedelta(seconds=5)
    domain = TracesDomain()
    acks = FakeAcks()

    asyncio.run(domain.on_execution_start(ctx, acks))
    asyncio.run(domain.on_execution_end(ctx, Outcome.succeeded({"answer": 42}), acks))

    started = acks.one("logs", "start_trace")
    completed = acks.one("logs", "complete_trace")
    assert started.result_id == completed.result_id and len(started.result_id or "") == 32
    assert completed.details is not None
    root, plan, answer = completed.details["spans"]
    assert root["name"] == "run agent" and root["parent_span_id"] is None
    assert plan["parent_span_id"] == answer["parent_span_id"] == root["span_id"]
    assert plan["end"] == answer["start"] and answer["end"] == root["end"]
    assert plan["attributes"] == {"depth": 1} and answer["attributes"] == {"tokens": "[1, 2]"}
    assert completed.details["outcome"] == "succeeded"
    assert completed.details["result"] == "{'answer': 42}"
    assert len(domain.completed) == 1


def test_a_resumed_run_completes_the_trace_its_first_attempt_started() -> None:
    acks = FakeAcks(previous_acks={("logs", "start_trace"): {"result_id": "a" * 32}})
    asyncio.run(TracesDomain().on_execution_end(make_context(attempt=2), Outcome.succeeded(), acks))
    assert acks.one("logs", "complete_trace").result_id == "a" * 32


def test_a_denied_run_gets_a_one_span_trace() -> None:
    acks = FakeAcks()
    decision = Decision("DENIED_BY_POLICY", "kill switch")
    asyncio.run(TracesDomain().on_denied(make_context(), decision, acks))
    completed = acks.one("logs", "complete_trace")
    assert acks.one("logs", "start_trace").result_id == completed.result_id
    assert completed.details is not None
    [span] = completed.details["spans"]
    assert span["name"] == "authorization"
    assert span["attributes"] == {"decision": "DENIED_BY_POLICY", "reason": "kill switch"}


RUN_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def in_memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def traced_run(domain: TracesDomain, ctx: RunContext) -> FakeAcks:
    ctx.started_at = datetime.now(UTC)
    acks = FakeAcks()
    asyncio.run(domain.on_execution_start(ctx, acks))
    ctx.step("plan", depth=2)
    ctx.ended_at = datetime.now(UTC)
    asyncio.run(domain.on_execution_end(ctx, Outcome.succeeded(), acks))
    return acks


def test_spans_are_recorded_through_the_sdk_tracer_with_the_acked_ids() -> None:
    provider, exporter = in_memory()

    acks = traced_run(TracesDomain(provider), make_context("agent"))

    completed = acks.one("logs", "complete_trace")
    assert completed.details is not None
    acked = {s["name"]: s for s in completed.details["spans"]}
    exported = {s.name: s for s in exporter.get_finished_spans()}
    assert set(exported) == set(acked) == {"run agent", "plan"}
    for name, span in exported.items():
        context = span.get_span_context()
        assert context is not None
        assert format(context.trace_id, "032x") == completed.result_id
        assert format(context.span_id, "016x") == acked[name]["span_id"]
    assert exported["plan"].parent is not None
    assert format(exported["plan"].parent.span_id, "016x") == acked["run agent"]["span_id"]
    assert exported["plan"].attributes == {"depth": 2}
    assert exported["run agent"].attributes is not None
    assert exported["run agent"].attributes["rok.run_id"] == "run-1"


def test_a_run_s_spans_join_the_trace_it_keeps() -> None:
    provider, exporter = in_memory()
    ctx = RunContext(
        {"id": "run-2", "handler": "agent", "attempt": 1, "traceparent": RUN_TRACEPARENT},
        "host/pid-1/abc",
    )

    acks = traced_run(TracesDomain(provider), ctx)

    trace_id, parent_span_id = RUN_TRACEPARENT.split("-")[1:3]
    assert acks.one("logs", "start_trace").result_id == trace_id
    spans = exporter.get_finished_spans()
    assert {format(s.context.trace_id, "032x") for s in spans if s.context} == {trace_id}
    assert all(s.context for s in spans)
    [root] = [s for s in spans if s.name == "run agent"]
    assert root.parent is not None and format(root.parent.span_id, "016x") == parent_span_id


def test_an_otlp_endpoint_in_the_environment_exports_the_spans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: list[bytes] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "agents-prod")
        tracing = tracing_from_env(WORKER)
        assert tracing.provider is not None
        acks = traced_run(TracesDomain(tracing.provider), make_context("agent"))
        tracing.shutdown()  # flushes the batch
    finally:
        server.shutdown()
        server.server_close()

    completed = acks.one("logs", "complete_trace")
    request = ExportTraceServiceRequest.FromString(received[0])
    [resource_spans] = request.resource_spans
    names = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert names["service.name"] == "agents-prod"
    spans = [s for ss in resource_spans.scope_spans for s in ss.spans]
    assert sorted(s.name for s in spans) == ["plan", "run agent"]
    assert {s.trace_id.hex() for s in spans} == {completed.result_id}
