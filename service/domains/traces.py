"""The traces domain: the run's trace, one span per step; acked as the `logs` domain.

- execution start: a root span `run <handler>` starts (through the
  OpenTelemetry SDK's tracer), logs/start_trace is acked with
  `result_id` = its trace id;
- each `ctx.step(name, **attributes)` becomes a child span that lasts until
  the next step (or the end);
- execution end: the spans end, and logs/complete_trace is acked with them
  in `details`. The process's tracer provider exports them as the OTEL_*
  variables say (service.telemetry); without one, a provider of this
  domain's own gives them their ids and exports nothing.

The trace is the run's: the root span continues the current trace (the run's
traceparent, which the pool makes current, or the worker's own span for the
run), so the service's spans for the run's requests and these share one
trace id. A run that keeps no traceparent gets a trace of its own; a run
resumed by another attempt keeps the trace id its first attempt started. A
denied run gets a trace of one span ("authorization"), so the evidence of
every run has the same shape.
"""

from __future__ import annotations

import secrets
from collections import deque
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from service.domains.evidence import iso, jsonable, provenance
from service.telemetry import current_tracing, run_context
from service.worker import AckChannel, Decision, Domain, Outcome, RunContext

DOMAIN = "logs"
START = "start_trace"
COMPLETE = "complete_trace"
TRACER = "rok.domains.traces"

_Root = tuple[trace.Span, otel_context.Context]
"""A run's root span, and the context it was started under."""


class TracesDomain(Domain):
    name = "traces"
    owes = MappingProxyType(
        {
            "on_denied": ((DOMAIN, START), (DOMAIN, COMPLETE)),
            "on_execution_start": ((DOMAIN, START),),
            "on_execution_end": ((DOMAIN, COMPLETE),),
        }
    )

    def __init__(self, tracer_provider: TracerProvider | None = None, keep: int = 1000) -> None:
        """`tracer_provider`: else the process's (service.telemetry.install_tracing), else
        one of this domain's own that exports nothing (the spans then live in the acks)."""
        provider = tracer_provider or current_tracing().provider or TracerProvider()
        self._tracer = provider.get_tracer(TRACER)
        self.completed: deque[dict[str, Any]] = deque(maxlen=keep)
        self._roots: dict[str, _Root] = {}

    async def on_execution_start(self, ctx: RunContext, acks: AckChannel) -> None:
        root, _ = self._root(ctx, acks)
        trace_id = _hex_trace_id(root)
        details = {"trace_id": trace_id, "handler": ctx.handler, **provenance(ctx)}
        details["started_at"] = iso(ctx.started_at) or datetime.now(UTC).isoformat()
        await acks.send(DOMAIN, START, result_id=trace_id, details=details)

    async def on_denied(self, ctx: RunContext, decision: Decision, acks: AckChannel) -> None:
        now = datetime.now(UTC)
        attributes = {"decision": decision.decision, "reason": decision.reason}
        parent = self._parent(ctx, acks)
        span = self._start("authorization", parent, now, attributes)
        span.end(end_time=_nanos(now))
        trace_id = _hex_trace_id(span)
        details = {"trace_id": trace_id, "handler": ctx.handler, **provenance(ctx)}
        await acks.send(DOMAIN, START, result_id=trace_id, details=details)
        spans = [_described(span, "authorization", parent, now, now, attributes)]
        await self._complete(ctx, trace_id, spans, {"denied": decision.decision}, acks)

    async def on_execution_end(self, ctx: RunContext, outcome: Outcome, acks: AckChannel) -> None:
        spans = self.spans(ctx, outcome, acks)
        summary = {"outcome": outcome.kind.value, "error": outcome.error}
        if outcome.success:
            summary["result"] = jsonable(outcome.result)
        await self._complete(ctx, spans[0]["trace_id"], spans, summary, acks)

    def spans(self, ctx: RunContext, outcome: Outcome, acks: AckChannel) -> list[dict[str, Any]]:
        """End the run's root span, with one child per step; the spans as plain dicts."""
        root, parent = self._root(ctx, acks, keep=False)
        self._roots.pop(ctx.run_id, None)
        end = ctx.ended_at or datetime.now(UTC)
        start = ctx.started_at or end
        root_attributes: dict[str, str | int | float] = {
            "rok.run_id": ctx.run_id,
            "rok.attempt": ctx.attempt,
            "rok.outcome": outcome.kind.value,
            "rok.cost": ctx.cost,
        }
        root.set_attributes(root_attributes)
        described = [_described(root, f"run {ctx.handler}", parent, start, end, root_attributes)]
        under_root = trace.set_span_in_context(root)
        steps = ctx.steps
        for index, step in enumerate(steps):
            step_end = steps[index + 1].at if index + 1 < len(steps) else end
            attributes = {k: jsonable(v) for k, v in step.attributes.items()}
            span = self._start(step.name, under_root, step.at, attributes)
            span.end(end_time=_nanos(step_end))
            described.append(_described(span, step.name, under_root, step.at, step_end, attributes))
        root.end(end_time=_nanos(end))
        return described

    async def _complete(
        self,
        ctx: RunContext,
        trace_id: str,
        spans: list[dict[str, Any]],
        summary: dict[str, Any],
        acks: AckChannel,
    ) -> None:
        details: dict[str, Any] = {
            "trace_id": trace_id,
            **provenance(ctx),
            "spans": spans,
            **summary,
        }
        self.completed.append({"run_id": ctx.run_id, **details})
        await acks.send(DOMAIN, COMPLETE, result_id=trace_id, details=details)

    # -- the spans ---------------------------------------------------------------------

    def _root(self, ctx: RunContext, acks: AckChannel, keep: bool = True) -> _Root:
        """The run's root span and its parent, started at the execution's start, in its trace."""
        known = self._roots.get(ctx.run_id)
        if known is not None:
            return known
        start = ctx.started_at or datetime.now(UTC)
        parent = self._parent(ctx, acks)
        root = (self._start(f"run {ctx.handler}", parent, start, {}), parent)
        if keep:
            self._roots[ctx.run_id] = root
        return root

    def _parent(self, ctx: RunContext, acks: AckChannel) -> otel_context.Context:
        """The trace the run's spans join: the current one, the run's, or its first attempt's."""
        if trace.get_current_span().get_span_context().is_valid:
            return otel_context.get_current()
        if ctx.traceparent:
            found = run_context(ctx.traceparent)
            if trace.get_current_span(found).get_span_context().is_valid:
                return found
        earlier = (acks.previous(DOMAIN, START) or {}).get("result_id")
        if isinstance(earlier, str) and len(earlier) == 32:
            # an attempt before this one started the trace: stay in it
            remote = SpanContext(
                trace_id=int(earlier, 16),
                span_id=int(secrets.token_hex(8), 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            return trace.set_span_in_context(NonRecordingSpan(remote))
        return otel_context.Context()  # a trace of its own

    def _start(
        self,
        name: str,
        parent: otel_context.Context,
        at: datetime,
        attributes: dict[str, Any],
    ) -> trace.Span:
        # not recorded (so not exported) when the run's trace was not sampled:
        # the span still has its ids, and the ack still records it
        return self._tracer.start_span(
            name,
            context=parent,
            start_time=_nanos(at),
            attributes={k: v for k, v in attributes.items() if v is not None},
        )


def _hex_trace_id(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


def _described(
    span: trace.Span,
    name: str,
    parent: otel_context.Context,
    start: datetime,
    end: datetime,
    attributes: dict[str, Any],
) -> dict[str, Any]:
    """A span as the complete_trace ack records it."""
    above = trace.get_current_span(parent).get_span_context()
    return {
        "trace_id": _hex_trace_id(span),
        "span_id": format(span.get_span_context().span_id, "016x"),
        "parent_span_id": format(above.span_id, "016x") if above.is_valid else None,
        "name": name,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "attributes": attributes,
    }


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)
