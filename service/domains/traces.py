"""The traces domain: one trace per run, one span per step; acked as the `logs` domain.

- execution start: logs/start_trace, `result_id` = the trace id;
- each `ctx.step(name, **attributes)` starts a span that lasts until the next
  step (or the end), under a root span for the whole execution;
- execution end: logs/complete_trace with the spans in `details`, and, when
  an OTLP endpoint is configured and opentelemetry-sdk is installed, the same
  spans exported as OpenTelemetry spans (see `service.domains.otlp`).

A denied run gets a trace of one span ("authorization"), so the evidence of
every run has the same shape. A run resumed by another attempt keeps the
trace id its first attempt started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections import deque
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from service.domains.evidence import iso, jsonable, provenance
from service.domains.otlp import OtlpExporter, exporter_for
from service.worker import AckChannel, Decision, Domain, Outcome, RunContext

log = logging.getLogger("rok.domains.traces")

DOMAIN = "logs"
START = "start_trace"
COMPLETE = "complete_trace"


class TracesDomain(Domain):
    name = "traces"
    owes = MappingProxyType(
        {
            "on_denied": ((DOMAIN, START), (DOMAIN, COMPLETE)),
            "on_execution_start": ((DOMAIN, START),),
            "on_execution_end": ((DOMAIN, COMPLETE),),
        }
    )

    def __init__(self, otlp_endpoint: str | None = None, keep: int = 1000) -> None:
        """`otlp_endpoint` (else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / _ENDPOINT) turns export on."""
        endpoint = (
            otlp_endpoint
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        )
        self.exporter: OtlpExporter | None = exporter_for(endpoint) if endpoint else None
        self.completed: deque[dict[str, Any]] = deque(maxlen=keep)
        self._trace_ids: dict[str, str] = {}

    async def on_execution_start(self, ctx: RunContext, acks: AckChannel) -> None:
        trace_id = self._trace_id(ctx, acks)
        details = {"trace_id": trace_id, "handler": ctx.handler, **provenance(ctx)}
        details["started_at"] = iso(ctx.started_at) or datetime.now(UTC).isoformat()
        await acks.send(DOMAIN, START, result_id=trace_id, details=details)

    async def on_denied(self, ctx: RunContext, decision: Decision, acks: AckChannel) -> None:
        trace_id = self._trace_id(ctx, acks)
        now = datetime.now(UTC)
        span = _span(
            trace_id,
            "authorization",
            now,
            now,
            None,
            {"decision": decision.decision, "reason": decision.reason},
        )
        details = {"trace_id": trace_id, "handler": ctx.handler, **provenance(ctx)}
        await acks.send(DOMAIN, START, result_id=trace_id, details=details)
        await self._complete(ctx, trace_id, [span], {"denied": decision.decision}, acks)

    async def on_execution_end(self, ctx: RunContext, outcome: Outcome, acks: AckChannel) -> None:
        trace_id = self._trace_id(ctx, acks)
        spans = self.spans(ctx, trace_id, outcome)
        summary = {"outcome": outcome.kind.value, "error": outcome.error}
        if outcome.success:
            summary["result"] = jsonable(outcome.result)
        await self._complete(ctx, trace_id, spans, summary, acks)

    def spans(self, ctx: RunContext, trace_id: str, outcome: Outcome) -> list[dict[str, Any]]:
        """The root span of the execution and one child per step, as plain dicts."""
        end = ctx.ended_at or datetime.now(UTC)
        start = ctx.started_at or end
        root = _span(
            trace_id,
            f"run {ctx.handler}",
            start,
            end,
            None,
            {
                "rok.run_id": ctx.run_id,
                "rok.attempt": ctx.attempt,
                "rok.outcome": outcome.kind.value,
                "rok.cost": ctx.cost,
            },
        )
        steps = ctx.steps
        spans = [root]
        for index, step in enumerate(steps):
            step_end = steps[index + 1].at if index + 1 < len(steps) else end
            attributes = {k: jsonable(v) for k, v in step.attributes.items()}
            spans.append(_span(trace_id, step.name, step.at, step_end, root["span_id"], attributes))
        return spans

    async def _complete(
        self,
        ctx: RunContext,
        trace_id: str,
        spans: list[dict[str, Any]],
        summary: dict[str, Any],
        acks: AckChannel,
    ) -> None:
        self._trace_ids.pop(ctx.run_id, None)
        details: dict[str, Any] = {
            "trace_id": trace_id,
            **provenance(ctx),
            "spans": spans,
            **summary,
        }
        if self.exporter is not None:
            try:
                details["exported"] = await asyncio.to_thread(self.exporter.export, spans)
            except Exception as exc:  # the trace is still recorded in the ack
                log.warning("OTLP export of trace %s failed: %r", trace_id, exc)
                details["export_error"] = repr(exc)
        self.completed.append({"run_id": ctx.run_id, **details})
        await acks.send(DOMAIN, COMPLETE, result_id=trace_id, details=details)

    def _trace_id(self, ctx: RunContext, acks: AckChannel) -> str:
        known = self._trace_ids.get(ctx.run_id)
        if known is None:
            earlier = acks.previous(DOMAIN, START)
            known = (earlier or {}).get("result_id") or secrets.token_hex(16)
            self._trace_ids[ctx.run_id] = known
        return known


def _span(
    trace_id: str,
    name: str,
    start: datetime,
    end: datetime,
    parent_span_id: str | None,
    attributes: dict[str, Any],
) -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "span_id": secrets.token_hex(8),
        "parent_span_id": parent_span_id,
        "name": name,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "attributes": attributes,
    }
