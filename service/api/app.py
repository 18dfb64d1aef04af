"""The FastAPI application: factory, lifespan, routers, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from service.api import runs
from service.api.errors import install_error_handlers
from service.api.limits import BodySizeLimit
from service.api.schemas import HealthOut
from service.authority import Authority
from service.config import Settings

DESCRIPTION = """
rok is the single authority for the lifecycle of a run. Every run goes through
CREATED → AUTHORIZED → EXECUTING → GOVERNANCE_CHECK → FINALIZING → COMPLETED
(or FAILED from any phase), declares at creation what evidence its governance
domains owe (its audit contract), and is reconciled against their acks.
"""


def create_app(settings: Settings | None = None, authority: Authority | None = None) -> FastAPI:
    """Build the app; `authority` lets tests share one with the code they drive."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = authority is None
        app.state.authority = authority or Authority(settings)
        try:
            yield
        finally:
            if owned:
                app.state.authority.close()

    app = FastAPI(
        title="rok — run orchestration authority",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    if authority is not None:
        app.state.authority = authority
    app.add_middleware(BodySizeLimit)
    install_error_handlers(app)
    app.include_router(runs.router)

    @app.get("/healthz", response_model=HealthOut, tags=["health"], summary="Liveness")
    async def healthz(request: Request) -> dict[str, str]:
        current: Authority = request.app.state.authority

        def ping() -> None:
            with current.database.read() as conn:
                conn.execute(text("SELECT 1"))

        await run_in_threadpool(ping)
        return {"status": "ok", "database": current.database.dialect}

    return app
