"""Traces: the OpenTelemetry SDK, configured from the standard OTEL_* variables.

Off, and free, unless asked for: with no OTLP endpoint and no
OTEL_TRACES_EXPORTER there is no provider, no exporter, and nothing is
instrumented (a request pays for none of it). Asked for, the process gets
one SDK TracerProvider whose resource honours OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES (else `service.name` is rok's default for the
program), whose sampler follows OTEL_TRACES_SAMPLER, and whose OTLP/HTTP
exporter reads OTEL_EXPORTER_OTLP_* as the SDK documents them.

One trace per run: the service keeps on each run the W3C traceparent of the
request that created it (`traceparent_now`); the worker continues it
(`run_context`), so every request about the run, the service's spans for
them (FastAPI, SQLAlchemy) and the worker's and domains' spans share the
run's trace id. Propagating it costs a header even with tracing off, so a
service that traces sees one trace per run whether the worker traces or not.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import Engine

from service.errors import ConfigError

log = logging.getLogger("rok.telemetry")

SERVICE = "rok"
WORKER = "rok-worker"
EXPORTERS = ("otlp", "console", "none")
TRACEPARENT = "traceparent"
# W3C trace context, version 00: version-traceid-spanid-flags, ids not all zero
_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass(frozen=True)
class Tracing:
    """This process's tracer provider, or None: tracing is off and nothing is instrumented."""

    provider: TracerProvider | None = None

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def instrument_app(self, app: Any) -> None:
        """A server span per request (route template as its name), continuing `traceparent`."""
        if self.provider is not None:
            from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

            FastAPIInstrumentor.instrument_app(app, tracer_provider=self.provider)

    def instrument_engine(self, engine: Engine) -> None:
        """A span per statement, under the request's (or the sweeper's) span.

        The contrib package's EngineTracer on this engine alone: its
        SQLAlchemyInstrumentor would also wrap create_engine for the whole
        process, and refuses SQLAlchemy 2.1 by its declared range, though the
        engine events it hooks are unchanged (tests/tracing checks the spans).
        """
        if self.provider is not None:
            from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
            from opentelemetry.metrics import NoOpMeterProvider

            tracer = self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
            meter = NoOpMeterProvider().get_meter("opentelemetry.instrumentation.sqlalchemy")
            usage = meter.create_up_down_counter("db.client.connections.usage")
            EngineTracer(tracer, engine, usage)  # type: ignore[no-untyped-call]

    def instrument_client(self, client: httpx.Client | httpx.AsyncClient) -> None:
        """A client span per request, whose traceparent the request carries."""
        if self.provider is not None:
            from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

            HTTPXClientInstrumentor.instrument_client(client, tracer_provider=self.provider)

    def shutdown(self) -> None:
        """Export what is buffered and stop (a process ending without it loses its last spans)."""
        if self.provider is not None:
            self.provider.shutdown()


OFF = Tracing()


def current_tracing() -> Tracing:
    """The process's global provider as a Tracing (OFF unless a program installed one)."""
    provider = trace.get_tracer_provider()
    return Tracing(provider if isinstance(provider, TracerProvider) else None)


def install_tracing(default_service_name: str) -> Tracing:
    """For a program's main: tracing from OTEL_*, made the process's global provider,
    so every part of the program (a worker's pool and its domains) traces alike."""
    tracing = tracing_from_env(default_service_name)
    if tracing.provider is not None:
        trace.set_tracer_provider(tracing.provider)
    return tracing


def tracing_from_env(default_service_name: str, env: Mapping[str, str] | None = None) -> Tracing:
    """The process's tracing as the OTEL_* variables ask (OFF when none asks for it).

    ConfigError names OTEL_TRACES_EXPORTER when it holds an exporter rok does not ship.
    """
    env = os.environ if env is None else env
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return OFF
    raw = (env.get("OTEL_TRACES_EXPORTER") or "").strip().lower()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not raw:
        # the SDK's own default is otlp to localhost; rok exports only when told where
        raw = "otlp" if endpoint else "none"
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={env.get('OTEL_TRACES_EXPORTER')!r} names "
            f"{', '.join(unknown)}; rok ships: {', '.join(EXPORTERS)}"
        )
    names = [n for n in names if n != "none"]
    if not names:
        return OFF
    provider = TracerProvider(resource=resource(default_service_name))
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    return Tracing(provider)


def resource(default_service_name: str) -> Resource:
    """OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, else `default_service_name`."""
    found = Resource.create()
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        found = found.merge(Resource({SERVICE_NAME: default_service_name}))
    return found


def _exporter(name: str) -> Any:
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*


# -- one trace per run -------------------------------------------------------------


def valid_traceparent(value: str | None) -> str | None:
    """`value` if it is a W3C traceparent (version 00) rok can continue, else None."""
    if value is None:
        return None
    value = value.strip().lower()
    return value if _TRACEPARENT.match(value) else None


def traceparent_now(header: str | None) -> str | None:
    """The traceparent a new run keeps: the current span's, else the request's own header.

    With tracing on, the current span is the server span of the request that
    creates the run (a child of the caller's, if it sent one); off, the
    caller's header is kept as sent, so the run still joins the caller's trace.
    """
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get(TRACEPARENT)
    return valid_traceparent(header)


def run_context(traceparent: str | None) -> otel_context.Context:
    """A context continuing the run's trace (an empty one if it keeps none)."""
    parsed = valid_traceparent(traceparent)
    if parsed is None:
        return otel_context.Context()
    return _PROPAGATOR.extract({TRACEPARENT: parsed})


def inject(headers: dict[str, str]) -> None:
    """Add the current trace's traceparent to outgoing `headers` (nothing without one)."""
    if trace.get_current_span().get_span_context().is_valid:
        _PROPAGATOR.inject(headers)
