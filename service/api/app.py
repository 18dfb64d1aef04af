"""The FastAPI application: factory, lifespan, routers, error mapping."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import __version__
from service.api import console
from service.api.auth import AuthGate
from service.api.errors import install_error_handlers
from service.api.idempotency import IdempotencyReplay, document_idempotency_key
from service.api.limits import BodySizeLimit
from service.api.observability import ObservedApp, configure_logging, install_observability
from service.api.openapi import install_docs, install_openapi, operation_id
from service.api.ratelimit import RateLimit
from service.api.routes import ROUTERS
from service.authority import Authority
from service.config import Settings
from service.delivery import Deliverer
from service.store import migrations
from service.store.keys import KeyStore
from service.store.listener import NotificationListener
from service.sweeper import Sweeper
from service.telemetry import SERVICE, Tracing, tracing_from_env

DESCRIPTION = """
rok is the single authority for the lifecycle of a run. Every run goes through
CREATED → AUTHORIZED → EXECUTING → GOVERNANCE_CHECK → FINALIZING → COMPLETED
(or FAILED from any phase), declares at creation what evidence its governance
domains owe (its audit contract), and is reconciled against their acks.
"""


def create_app(
    settings: Settings | None = None,
    authority: Authority | None = None,
    sweep: bool = True,
    tracing: Tracing | None = None,
) -> FastAPI:
    """Build the app; `authority` lets tests share one with the code they drive.

    Nothing here touches the database: the lifespan opens it, so the OpenAPI
    schema can be exported without one. `tracing`: else as OTEL_* asks (off unset).
    """
    if settings is None and authority is None:
        # served by uvicorn itself (`uvicorn --factory service.api.app:create_app`):
        # nobody configured logging (`rok serve` does it before building the app)
        settings = Settings.from_env()
        configure_logging(settings)
    settings = settings or (authority.settings if authority else Settings.from_env())
    traced = tracing or tracing_from_env(SERVICE)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = authority is None
        if owned:
            # served straight by uvicorn (`--factory`) as well as by `rok serve`:
            # a schema behind the code would answer 500s, so refuse to start
            await asyncio.to_thread(migrations.check_schema, settings.database_url)
        current = authority or Authority(settings)
        app.state.authority = current
        if owned:
            traced.instrument_engine(current.database.engine)
        current.store.observers.add(metrics)  # counted from here on, after each commit
        listener = None
        if current.database.is_postgres:
            listener = NotificationListener(current.database.url, current.signals)
            await asyncio.to_thread(listener.start)
        sweeping = asyncio.create_task(Sweeper(current).run_forever()) if sweep else None
        # alerts, beside the sweeper: only with somewhere to send them
        delivering = None
        if sweep and current.settings.webhook_urls:
            delivering = asyncio.create_task(Deliverer(current).run_forever())
        try:
            yield
        finally:
            for task in (sweeping, delivering):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if listener is not None:
                await asyncio.to_thread(listener.stop)
            current.store.observers.remove(metrics)
            if owned:
                current.close()
            if tracing is None:  # ours: export what is buffered
                traced.shutdown()

    app = ObservedApp(
        title="rok — run orchestration authority",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # served by install_docs, from this service's own assets
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    if authority is not None:
        app.state.authority = authority
        traced.instrument_engine(authority.database.engine)

    def keys() -> KeyStore:
        current: Authority = app.state.authority
        return current.keys

    # Starlette runs the last added outermost: body limit, then who is calling,
    # then what that caller may do (rate limit, Idempotency-Key replay), then the app.
    app.add_middleware(IdempotencyReplay, authority=lambda: app.state.authority)
    app.add_middleware(RateLimit, limit=settings.rate_limit)
    app.add_middleware(AuthGate, settings=settings, keys=keys)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    document_idempotency_key(app)
    install_openapi(app)
    install_docs(app)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(console.router)
    metrics = install_observability(app, settings)  # /healthz /readyz /version /metrics
    traced.instrument_app(app)  # outermost: a request's span covers the gates too

    return app
