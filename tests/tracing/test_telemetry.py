"""Tracing from the OTEL_* variables: off and free unset, refusals that name the variable."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from service.api.app import create_app
from service.config import Settings
from service.errors import ConfigError
from service.telemetry import OFF, SERVICE, resource, tracing_from_env, valid_traceparent
from service.worker.retries import Backoff, RetryingSender
from service.worker.tracing import continuing

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture(autouse=True)
def no_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_tracing_is_off_and_nothing_is_instrumented_when_nothing_asks() -> None:
    assert tracing_from_env(SERVICE) is OFF
    app = create_app(Settings(database_url="sqlite:///unused.db", auth="off"))
    assert not any("OpenTelemetry" in m.cls.__name__ for m in app.user_middleware)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
        {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
    ],
)
def test_tracing_stays_off_when_told(env: dict[str, str]) -> None:
    assert tracing_from_env(SERVICE, env) is OFF


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"},
        {"OTEL_TRACES_EXPORTER": "console"},
        {"OTEL_TRACES_EXPORTER": "otlp,console"},
    ],
)
def test_an_endpoint_or_an_exporter_turns_tracing_on(env: dict[str, str]) -> None:
    tracing = tracing_from_env(SERVICE, env)
    try:
        assert tracing.enabled
    finally:
        tracing.shutdown()


def test_an_exporter_rok_does_not_ship_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER='zipkin' names zipkin"):
        tracing_from_env(SERVICE, {"OTEL_TRACES_EXPORTER": "zipkin"})


def test_otel_service_name_is_honoured_else_the_program_s_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resource(SERVICE).attributes["service.name"] == "rok"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "rok-eu-1")
    assert resource(SERVICE).attributes["service.name"] == "rok-eu-1"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=ops")
    assert resource(SERVICE).attributes["service.name"] == "from-attrs"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (TRACEPARENT, True),
        (TRACEPARENT.upper(), True),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", False),
        ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", False),
        ("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", False),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", False),
        ("", False),
    ],
)
def test_only_a_w3c_traceparent_is_kept(value: str, valid: bool) -> None:
    assert valid_traceparent(value) == (value.lower() if valid else None)


def test_a_worker_call_about_a_run_carries_the_run_s_traceparent_with_tracing_off() -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent"))
        return httpx.Response(200, json={})

    async def call() -> None:
        sender = RetryingSender(
            "http://rok.test",
            timeout_s=1.0,
            retry_timeout_s=None,
            backoff=Backoff(),
            max_connections=1,
            transport=httpx.MockTransport(answer),
        )
        await sender.send("GET", "/healthz")  # no run: no trace
        with continuing({"id": "r1", "traceparent": TRACEPARENT}, OFF):
            await sender.send("POST", "/runs/r1/acks", json={})
            await asyncio.create_task(sender.send("GET", "/runs/r1"))  # tasks inherit it
        await sender.aclose()

    asyncio.run(call())
    assert seen == [None, TRACEPARENT, TRACEPARENT]
