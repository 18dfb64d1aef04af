"""/healthz, /readyz, /version and /metrics: what an orchestrator and Prometheus ask.

- /healthz is liveness: the process answers. It touches no database, so a
  database outage never makes an orchestrator restart every replica.
- /readyz is readiness: 200 when the database answers through the app's own
  pool and its schema is at the code's head revision, else 503 with the
  reason. The pool reconnects (pre-ping on PostgreSQL), so it turns 200
  again when the database is back, without a restart.
- /version says what is deployed and touches no database: the version, the
  schema revision this code runs on (migrates to and requires) and the backend.
- /metrics is the Prometheus text of the app's registry (service.api.observability.metrics).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import column, inspect, select, table
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from service import __version__
from service.api.observability.metrics import Metrics
from service.api.schemas import HealthOut
from service.authority import Authority
from service.config import Settings
from service.store import migrations
from service.store.database import Database
from service.store.dialects import dialect_for

READY_TIMEOUT_S = 3.0
"""A database that has not answered by then is not ready (an unreachable host can hang)."""
VERSION_TABLE = "alembic_version"
VERSION_COLUMN = table(VERSION_TABLE, column("version_num")).c.version_num
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    reason: str | None = Field(
        default=None, description="Why the service is not ready (absent when it is)."
    )
    schema_revision: str | None = Field(
        default=None, description="The database's schema revision, when it could be read."
    )


class VersionOut(BaseModel):
    version: str = Field(description="rok's version (service.__version__).")
    schema_revision: str = Field(
        description="The schema revision this code runs on: `rok db upgrade` migrates to "
        "it, and /readyz is 503 until the database is at it."
    )
    backend: Literal["sqlite", "postgresql"]


@functools.cache
def code_schema_revision() -> str:
    """The head revision of the migrations shipped with this code (read from disk once)."""
    return migrations.head_revision()


def database_revision(database: Database) -> str | None:
    """The revision in Alembic's version table; None when there is none (no rok schema).

    Read directly: Alembic's MigrationContext would log two INFO lines per probe.
    """
    with database.read() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        revisions = conn.execute(select(VERSION_COLUMN)).scalars().all()
    return ", ".join(sorted(revisions)) or None  # several: a branched history, never head


async def readiness(authority: Authority | None) -> tuple[str | None, str | None]:
    """(reason it is not ready or None, the database's revision if it was read)."""
    if authority is None:
        return "the service is starting: its database is not open yet", None
    try:
        revision = await asyncio.wait_for(
            asyncio.to_thread(database_revision, authority.database), READY_TIMEOUT_S
        )
    except TimeoutError:
        return f"the database did not answer within {READY_TIMEOUT_S:g} s", None
    except SQLAlchemyError as exc:
        cause: BaseException = getattr(exc, "orig", None) or exc
        first_line = (str(cause).strip().splitlines() or [""])[0]
        return f"the database does not answer: {type(cause).__name__}: {first_line}", None
    head = await run_in_threadpool(code_schema_revision)
    if revision != head:
        where = "has no rok schema" if revision is None else f"is at schema revision {revision}"
        return f"the database {where}, the code needs {head}: run `rok db upgrade`", revision
    return None, revision


def health_router(settings: Settings, metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["health"])
    backend = dialect_for(settings.database_url).name

    @router.get("/healthz", response_model=HealthOut, summary="Liveness", operation_id="liveness")
    async def healthz() -> dict[str, Any]:
        """The process answers; the database is not asked (see /readyz)."""
        # rok_enabled: a pool with ROK_ENABLED=false refuses to start against a
        # service that governs (WorkerPool.serve), instead of failing every run
        return {"status": "ok", "database": backend, "rok_enabled": settings.rok_enabled}

    @router.get(
        "/readyz",
        response_model=ReadyOut,
        responses={503: {"model": ReadyOut, "description": "Not ready: the reason says why"}},
        summary="Readiness",
        operation_id="readiness",
    )
    async def readyz(request: Request) -> JSONResponse:
        """200 when the database answers and its schema is at this code's revision."""
        authority: Authority | None = getattr(request.app.state, "authority", None)
        reason, revision = await readiness(authority)
        body = ReadyOut(
            status="not_ready" if reason else "ready", reason=reason, schema_revision=revision
        )
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503 if reason else 200)

    @router.get("/version", response_model=VersionOut, summary="Version", operation_id="version")
    async def version() -> dict[str, str]:
        """What is deployed; the database is not asked."""
        revision = await run_in_threadpool(code_schema_revision)
        return {"version": __version__, "schema_revision": revision, "backend": backend}

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {PROMETHEUS_TEXT: {}}, "description": "Prometheus text"}},
        summary="Prometheus metrics",
        operation_id="metrics",
    )
    async def prometheus_metrics() -> Response:
        """Counters of this replica, and live runs per phase read from the database."""
        body = await run_in_threadpool(metrics.exposition)
        return Response(body, media_type=PROMETHEUS_TEXT)

    return router
