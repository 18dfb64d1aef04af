"""The two platform limits, as a tiny ASGI app served like the service itself.

- `GET /bare`: a FastAPI endpoint that does nothing: the most requests per
  second this server stack can answer on this machine.
- `POST /write`: one row inserted and committed through the same `Database`
  class the service uses (same SQLite pragmas, WAL, synchronous=FULL,
  BEGIN IMMEDIATE and in-process write lock; same PostgreSQL pool), from a
  sync endpoint in the same thread pool: the most durable writes per second.

A rok lifecycle can be no faster than these; the bench reports how close it is.
The writes go to a table of their own (`bench_limit_writes`), so they neither
touch nor are slowed by the service's tables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from service.config import Settings
from service.model.phases import utc_now
from service.store.columns import AutoId, UTCDateTime
from service.store.database import Database

limit_metadata = MetaData()

limit_writes = Table(
    "bench_limit_writes",
    limit_metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("client", Integer, nullable=False),
    Column("payload", String(100), nullable=False),
    Column("at", UTCDateTime, nullable=False),
)


def create_limits_app() -> FastAPI:
    """The app; its database comes from ROK_DATABASE_URL, like the service's."""
    settings = Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings.database_url)
        limit_metadata.create_all(database.engine)
        app.state.database = database
        try:
            yield
        finally:
            database.dispose()

    app = FastAPI(title="rok bench limits", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/bare")
    async def bare() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/write", status_code=201)
    def write(request: Request) -> dict[str, str]:
        database: Database = request.app.state.database
        with database.write() as conn:
            conn.execute(insert(limit_writes).values(client=0, payload="x" * 64, at=utc_now()))
        return {"status": "written"}

    return app
