"""Traces: one span per step under a root span; the trace id survives a new attempt."""

from __future__ import annotations

import asyncio
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from service.domains.otlp import exporter_for
from service.domains.traces import TracesDomain
from service.worker import Decision, Outcome
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


def test_without_the_sdk_export_is_off_and_traces_stay_in_the_acks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a None entry in sys.modules makes the import fail, as on a machine without the SDK
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    assert exporter_for("http://collector:4318") is None
    domain = TracesDomain(otlp_endpoint="http://collector:4318")
    assert domain.exporter is None


def test_with_the_sdk_spans_are_exported_with_rok_s_ids() -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
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
        domain = TracesDomain(otlp_endpoint=f"http://127.0.0.1:{server.server_port}")
        ctx = make_context("agent")
        ctx.started_at = datetime.now(UTC)
        ctx.step("plan")
        ctx.ended_at = datetime.now(UTC)
        acks = FakeAcks()
        asyncio.run(domain.on_execution_end(ctx, Outcome.succeeded(), acks))
        assert domain.exporter is not None
        domain.exporter.close()
    finally:
        server.shutdown()
        server.server_close()

    completed = acks.one("logs", "complete_trace")
    assert completed.details is not None and completed.details["exported"] is True
    request = ExportTraceServiceRequest.FromString(received[0])
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert [s.name for s in spans] == ["run agent", "plan"]
    assert {s.trace_id.hex() for s in spans} == {completed.result_id}
