"""A claimed run's work, in the run's trace.

The run keeps the W3C traceparent of the request that created it; while the
pool drives the run, that trace is the current context of the run's task
(and of the tasks and handler threads it starts), so every request the
worker and its domains send about the run carries it, and the service's
spans for them join the run's trace. With tracing on in the worker, a span
`work <handler>` covers the whole attempt, under the run's trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind

from service.telemetry import Tracing, run_context


@contextlib.contextmanager
def continuing(run: dict[str, Any], tracing: Tracing) -> Iterator[None]:
    """Make the run's trace current for the block (the block's task: asyncio copies it on)."""
    parent = run_context(run.get("traceparent"))
    token = otel_context.attach(parent)
    try:
        if tracing.provider is None:
            yield
            return
        tracer = tracing.provider.get_tracer("rok.worker")
        attributes: dict[str, str | int] = {
            "rok.run_id": str(run["id"]),
            "rok.attempt": int(run.get("attempt", 1)),
        }
        name = f"work {run.get('handler') or ''}".strip()
        with tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ):
            yield
    finally:
        otel_context.detach(token)
