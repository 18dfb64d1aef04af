"""Engines for both backends; every dialect difference of connection setup lives here.

SQLite (the embedded default): WAL so readers never block the writer,
`BEGIN IMMEDIATE` so a transaction takes the write lock when it starts
instead of failing to upgrade a read lock half-way (the classic SQLITE_BUSY
deadlock), `busy_timeout` for writers in other processes, and one in-process
write lock so threads of this process queue in order instead of spinning in
SQLite's busy handler.

PostgreSQL: psycopg 3, a connection pool sized for the thread pool, and row
locks (`FOR UPDATE`, `SKIP LOCKED`) that do the same job per row.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url


class Database:
    """One engine plus how to open a write transaction on it."""

    def __init__(self, url: str, pool_size: int = 20) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self.engine = _create_engine(url, pool_size)
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed when the block ends without an error."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only snapshot (one transaction, so multi-table reads agree)."""
        with self.engine.connect() as conn:
            options: dict[str, Any] = {"rok_read_only": True}
            if self.is_postgres:
                # READ COMMITTED would let a run row and its history come from
                # two different commits; one snapshot keeps invariant 1 for readers.
                options["isolation_level"] = "REPEATABLE READ"
            conn = conn.execution_options(**options)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _create_engine(url: str, pool_size: int) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below (pysqlite's own
        # implicit BEGIN is deferred, which is what causes upgrade deadlocks).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the request that made it returns.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Readers take a deferred snapshot (WAL lets them run beside the writer);
        # writers take the write lock up front.
        if conn.get_execution_options().get("rok_read_only"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
