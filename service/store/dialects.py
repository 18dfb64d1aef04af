"""Every difference between SQLite and PostgreSQL, in one place.

The rest of the store writes one SQLAlchemy statement for both databases and
asks the run's `Dialect` for the few things that cannot be the same:

| concern             | SQLite (embedded, one file)     | PostgreSQL (replicas)           |
|---------------------|---------------------------------|---------------------------------|
| connection setup    | WAL, synchronous=FULL, busy wait| a pre-pinged pool               |
| a writer's lock     | BEGIN IMMEDIATE: the whole file | FOR UPDATE on the run's row     |
| concurrent claimers | queue on the file lock          | SKIP LOCKED: pass a taken row   |
| a reader's snapshot | WAL: one per transaction        | REPEATABLE READ                 |
| wake other replicas | none (one process writes)       | pg_notify, sent after the commit|
| elect one sweeper   | always elected (one process)    | advisory lock per schema        |
| serialise migrations| BEGIN IMMEDIATE                 | advisory lock per schema        |
| a lighter commit    | synchronous=NORMAL for one      | SET LOCAL synchronous_commit off|
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import psycopg
from sqlalchemy import Connection, Engine, Select, event, text
from sqlalchemy.engine import make_url

log = logging.getLogger("rok.store")

# Option set on read connections so the SQLite "begin" hook takes a deferred
# (reader's) BEGIN instead of the writer's BEGIN IMMEDIATE.
READ_ONLY_OPTION = "rok_read_only"
# Arbitrary, fixed: advisory lock keys (the second half is the schema's hash).
SWEEPER_LOCK_KEY = 0x524F4B53  # "ROKS"
MIGRATION_LOCK_KEY = 0x726F6B  # "rok"
SQLITE_BUSY_TIMEOUT_MS = 30000
# Key of Connection.info (the DBAPI connection's, so it outlives a checkout:
# each write transaction starts by clearing it) where publish() keeps the
# notices of the open transaction until it commits.
_NOTICES = "rok_notices"


class Dialect(Protocol):
    """What one backend does differently; every method is safe to call on both."""

    name: str
    """SQLAlchemy's backend name: "sqlite" or "postgresql"."""
    listens: bool
    """Whether other processes' commits can wake this one (LISTEN/NOTIFY)."""

    def configure(self, engine: Engine, migrating: bool = False) -> None:
        """Hook connection setup onto `engine` (pragmas, how a transaction begins)."""

    def lock_run(self, query: Select[Any]) -> Select[Any]:
        """`query` (one run's row) locked for this write transaction."""

    def skip_locked(self, query: Select[Any]) -> Select[Any]:
        """`query` locked, passing over rows another transaction holds (claims)."""

    def read_options(self) -> dict[str, Any]:
        """Execution options of a read transaction that sees one snapshot."""

    def statement_options(self) -> dict[str, Any]:
        """Execution options of a read that is one statement (its own snapshot), sent
        without a transaction around it where the database allows."""

    def publish(self, conn: Connection, channel: str, payloads: Sequence[str]) -> None:
        """Tell other processes each of `payloads`, when `conn`'s transaction commits."""

    def elected(self, engine: Engine, key: int) -> contextlib.AbstractContextManager[bool]:
        """True while this process alone holds `key` (per schema); False elsewhere."""

    def lock_migrations(self, conn: Connection) -> None:
        """Make `conn` the only migrator of this database until it closes."""

    def write_transaction(
        self, conn: Connection, durable: bool
    ) -> contextlib.AbstractContextManager[None]:
        """One write transaction on `conn`, committed when the block ends without an error.

        `durable=False` commits without waiting for the disk: for bookkeeping whose
        loss costs a retry, never a run's record. Such a commit survives a crash of
        the process and reaches the disk with the next durable commit; only a power
        loss in between can forget it.
        """


class SqliteDialect:
    name = "sqlite"
    listens = False

    def configure(self, engine: Engine, migrating: bool = False) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Hand transaction control to the "begin" hook below: pysqlite's own
            # implicit BEGIN is deferred (the classic upgrade deadlock, SQLITE_BUSY)
            # and never covers DDL (a failed migration would leave half a schema).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            # WAL is a property of the file: readers never block the writer.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if not migrating:
                # FULL: a commit is on disk before the request that made it returns.
                cursor.execute("PRAGMA synchronous=FULL")
                # Not while migrating: batch migrations drop and recreate tables,
                # which with foreign keys ON would cascade deletes into children.
                cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Readers take a deferred snapshot (WAL lets them run beside the
            # writer); writers take the write lock up front, so two writers
            # queue instead of deadlocking half-way.
            if conn.get_execution_options().get(READ_ONLY_OPTION):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

    def lock_run(self, query: Select[Any]) -> Select[Any]:
        return query  # BEGIN IMMEDIATE already made this transaction the only writer

    def skip_locked(self, query: Select[Any]) -> Select[Any]:
        return query  # one writer at a time: there is no row another claimer holds

    def read_options(self) -> dict[str, Any]:
        return {READ_ONLY_OPTION: True}

    def statement_options(self) -> dict[str, Any]:
        # a deferred BEGIN (a reader's), ended when the connection goes back to the pool
        return {READ_ONLY_OPTION: True}

    def publish(self, conn: Connection, channel: str, payloads: Sequence[str]) -> None:
        return None  # one process writes the file; its own signals woke its waiters

    @contextlib.contextmanager
    def elected(self, engine: Engine, key: int) -> Iterator[bool]:
        yield True

    def lock_migrations(self, conn: Connection) -> None:
        return None  # the migration's BEGIN IMMEDIATE makes a second migrator wait

    @contextlib.contextmanager
    def write_transaction(self, conn: Connection, durable: bool) -> Iterator[None]:
        if durable:
            with conn.begin():
                yield
            return
        # synchronous is per connection and cannot change inside a transaction:
        # set it on the driver's connection (no implicit BEGIN) around this one
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA synchronous=NORMAL")  # WAL: on disk with the next FULL commit
        try:
            with conn.begin():
                yield
        finally:
            raw.execute("PRAGMA synchronous=FULL")


class PostgresDialect:
    name = "postgresql"
    listens = True

    def configure(self, engine: Engine, migrating: bool = False) -> None:
        return None

    def lock_run(self, query: Select[Any]) -> Select[Any]:
        return query.with_for_update()

    def skip_locked(self, query: Select[Any]) -> Select[Any]:
        # concurrent claimers pass over a row another claimer holds instead of
        # queueing behind it (and never both take it)
        return query.with_for_update(skip_locked=True)

    def read_options(self) -> dict[str, Any]:
        # READ COMMITTED would let a run row and its history come from two
        # different commits; one snapshot keeps invariant 1 for readers.
        return {READ_ONLY_OPTION: True, "isolation_level": "REPEATABLE READ"}

    def statement_options(self) -> dict[str, Any]:
        # one round trip: no BEGIN and no COMMIT around the statement
        return {"isolation_level": "AUTOCOMMIT"}

    def publish(self, conn: Connection, channel: str, payloads: Sequence[str]) -> None:
        # Kept until the transaction commits, then sent in one statement of its
        # own (write_transaction). A NOTIFY inside the transaction would take
        # PostgreSQL's cluster-wide notify lock at commit and hold it through
        # the commit's WAL flush: every notifying commit (each ack, creation,
        # move) would wait for the one before it to reach the disk.
        if payloads:
            conn.info.setdefault(_NOTICES, []).append((channel, tuple(payloads)))

    @contextlib.contextmanager
    def elected(self, engine: Engine, key: int) -> Iterator[bool]:
        # per schema: deployments (and test runs) sharing a database in
        # separate schemas do not elect each other
        with engine.connect() as conn:
            got = bool(
                conn.execute(
                    text("SELECT pg_try_advisory_lock(:key, hashtext(current_schema()))"),
                    {"key": key},
                ).scalar()
            )
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(
                        text("SELECT pg_advisory_unlock(:key, hashtext(current_schema()))"),
                        {"key": key},
                    )
                    conn.commit()

    def lock_migrations(self, conn: Connection) -> None:
        conn.execute(
            text("SELECT pg_advisory_lock(:key, hashtext(current_schema()))"),
            {"key": MIGRATION_LOCK_KEY},
        )
        # Alembic must find the connection outside a transaction to run its own.
        conn.commit()

    @contextlib.contextmanager
    def write_transaction(self, conn: Connection, durable: bool) -> Iterator[None]:
        conn.info.pop(_NOTICES, None)  # nothing of an earlier transaction on this connection
        try:
            with conn.begin():
                if not durable:
                    conn.execute(text("SET LOCAL synchronous_commit TO OFF"))  # this one only
                yield
        finally:
            notices = conn.info.pop(_NOTICES, None)
        if notices:  # committed: nothing is sent for a transaction that rolled back
            send_notices(conn, notices)


def send_notices(conn: Connection, notices: Sequence[tuple[str, Sequence[str]]]) -> None:
    """NOTIFY each of `notices` in one statement, its own transaction, after a commit.

    That transaction commits without waiting for the disk (a notification is
    not durable anyway: a crash loses the ones not yet delivered), so it holds
    the notify lock for microseconds, not for a WAL flush. A notice that
    cannot be sent is logged, never raised: the write it announces committed,
    and waiters on other replicas find it at their next re-check.
    """
    calls = ["set_config('synchronous_commit', 'off', true)"]
    params: list[str] = []
    for channel, payloads in notices:
        for payload in payloads:
            calls.append("pg_notify(%s, %s)")
            params += [channel, payload]
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    try:
        raw.autocommit = True  # one statement, one round trip: no BEGIN, no COMMIT
        try:
            raw.execute(f"SELECT {', '.join(calls)}", params)  # type: ignore[arg-type]
        finally:
            raw.autocommit = False
    except psycopg.Error:
        log.warning("notices %s not sent to other replicas", notices, exc_info=True)


def dialect_for(url: str) -> Dialect:
    """The Dialect of a database URL; ValueError names a backend rok does not run on."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return SqliteDialect()
    if backend == "postgresql":
        return PostgresDialect()
    raise ValueError(f"rok runs on sqlite or postgresql, not {backend!r} ({url.split(':')[0]})")
