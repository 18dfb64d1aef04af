"""Engines for both backends, and how a read or a write transaction opens on them.

What differs between SQLite and PostgreSQL is the Dialect's (service.store.dialects);
here is what is the same: a pool sized for the thread pool, a write transaction
that commits when its block ends, a read transaction that sees one snapshot.
SQLite adds one in-process write lock, so threads of this process queue in
order instead of spinning in SQLite's busy handler.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from sqlalchemy import Connection, Engine, create_engine

from service.store.dialects import SQLITE_BUSY_TIMEOUT_MS, Dialect, dialect_for


class Database:
    """One engine plus how to open a write transaction on it."""

    def __init__(self, url: str, pool_size: int = 20) -> None:
        self.url = url
        self.dialect: Dialect = dialect_for(url)
        self.engine = _create_engine(url, self.dialect, pool_size)
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect.name == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect.name == "postgresql"

    @contextlib.contextmanager
    def write(self, durable: bool = True) -> Iterator[Connection]:
        """A write transaction, committed when the block ends without an error.

        `durable=False` commits without waiting for the disk (Dialect.write_transaction):
        only for bookkeeping whose loss costs a retry, never for a run's record.
        """
        lock = self._write_lock or contextlib.nullcontext()
        with lock, self.engine.connect() as conn, self.dialect.write_transaction(conn, durable):
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only snapshot (one transaction, so multi-table reads agree)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(**self.dialect.read_options())
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _create_engine(url: str, dialect: Dialect, pool_size: int) -> Engine:
    if dialect.name == "sqlite":
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
    else:
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    dialect.configure(engine)
    return engine
