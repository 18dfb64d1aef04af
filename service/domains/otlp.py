"""Optional export of run traces as OpenTelemetry spans over OTLP/HTTP.

opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http are not rok
dependencies (they pull in protobuf): install them to export. Without them
the traces domain still records every trace in its acks and says once, in
the log, that export is off. The spans keep rok's trace and span ids, so a
trace found in a tracing backend and the run's complete_trace ack match.
"""

from __future__ import annotations

import importlib
import logging
from datetime import datetime
from typing import Any

log = logging.getLogger("rok.domains.traces")

SERVICE_NAME = "rok-worker"


class OtlpExporter:
    def __init__(self, endpoint: str, modules: dict[str, Any]) -> None:
        self.endpoint = endpoint
        self._m = modules
        self._resource = modules["resources"].Resource.create({"service.name": SERVICE_NAME})
        self._exporter = modules["exporter"].OTLPSpanExporter(endpoint=endpoint)

    def export(self, spans: list[dict[str, Any]]) -> bool:
        """Export the spans of one trace (blocking: call it from a thread)."""
        readable = [self._readable(span) for span in spans]
        result = self._exporter.export(readable)
        return bool(result == self._m["export"].SpanExportResult.SUCCESS)

    def close(self) -> None:
        self._exporter.shutdown()

    def _readable(self, span: dict[str, Any]) -> Any:
        api, sdk = self._m["api"], self._m["sdk"]
        trace_id = int(span["trace_id"], 16)

        def context(span_id: str) -> Any:
            return api.SpanContext(
                trace_id=trace_id,
                span_id=int(span_id, 16),
                is_remote=False,
                trace_flags=api.TraceFlags(api.TraceFlags.SAMPLED),
            )

        parent = span.get("parent_span_id")
        return sdk.ReadableSpan(
            name=span["name"],
            context=context(span["span_id"]),
            parent=context(parent) if parent else None,
            resource=self._resource,
            attributes={k: v for k, v in span["attributes"].items() if v is not None},
            kind=api.SpanKind.INTERNAL,
            start_time=_nanos(span["start"]),
            end_time=_nanos(span["end"]),
        )


def exporter_for(endpoint: str) -> OtlpExporter | None:
    """An exporter to `endpoint` (…/v1/traces is added to a bare host), or None without the SDK."""
    try:
        modules = {
            "api": importlib.import_module("opentelemetry.trace"),
            "sdk": importlib.import_module("opentelemetry.sdk.trace"),
            "export": importlib.import_module("opentelemetry.sdk.trace.export"),
            "resources": importlib.import_module("opentelemetry.sdk.resources"),
            "exporter": importlib.import_module(
                "opentelemetry.exporter.otlp.proto.http.trace_exporter"
            ),
        }
    except ImportError as exc:
        log.warning(
            "OTLP endpoint %s configured but %s; traces stay in the acks only "
            "(pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http)",
            endpoint,
            exc,
        )
        return None
    if not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return OtlpExporter(endpoint, modules)


def _nanos(moment: str) -> int:
    return int(datetime.fromisoformat(moment).timestamp() * 1_000_000_000)
