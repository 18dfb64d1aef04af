"""Bulk-load finished runs straight into the tables (W3), not through the API.

Each run looks like one the service finished: its row, its history, its
five-expectation contract and its acks (95% COMPLETED through the whole
phase table with four domain acks and finalize_run; 5% denied at
authorization, FAILED with only finalize_run). Runs are dated over the 30
days before now, so they sort before anything the bench creates.

SQLite: plain executemany in large transactions with synchronous=OFF (a bulk
load, not a measured write). PostgreSQL: COPY, then ANALYZE, which is what
autovacuum would do to tables that grew this much. SQLite gets no ANALYZE:
rok never runs one, so the planner sees what it would see in production.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from service.model.audit import DEFAULT_DOMAIN_EXPECTATIONS, FINALIZE_RUN
from service.store.listener import libpq_url

CHUNK = 20_000
SPACING = timedelta(seconds=2.5)  # 1,000,000 runs span about 29 days
DENIED_EVERY = 20  # one run in twenty was denied
RUN_TIMEOUT_MS = 30_000
DEADLINE_MS = 35_000

RUN_COLUMNS = (
    "id", "tenant_id", "handler", "input", "phase", "attempt", "max_attempts", "priority",
    "run_timeout_ms", "idempotency_scope", "request_fingerprint", "error", "execution_success",
    "governance_passed", "governance_checked_at", "governance_reconciliation",
    "clock_started_at", "finalize_deadline", "history_length", "available",
    "lease_worker_id", "lease_token", "lease_expires_at", "created_at", "updated_at",
)  # fmt: skip
TRANSITION_COLUMNS = (
    "run_id",
    "seq",
    "attempt",
    "from_phase",
    "to_phase",
    "at",
    "reason",
    "details",
)
EXPECTATION_COLUMNS = ("run_id", "domain", "action", "deadline_ms", "position")
ACK_COLUMNS = ("run_id", "domain", "action", "result_id", "error", "at", "late", "details")

COMPLETE = json.dumps(
    {"status": "COMPLETE", "missing": [], "drift": [], "invalid": [], "failed": [], "stale": False}
)
CONTRACT = [*DEFAULT_DOMAIN_EXPECTATIONS, FINALIZE_RUN]
PATH = (
    ("CREATED", "AUTHORIZED", "authorization granted", '{"decision": "GRANTED"}'),
    ("AUTHORIZED", "EXECUTING", "execution started", None),
    ("EXECUTING", "GOVERNANCE_CHECK", "execution succeeded", '{"success": true}'),
    ("GOVERNANCE_CHECK", "FINALIZING", "finalization started", None),
    ("FINALIZING", "COMPLETED", "run completed", None),
)


@dataclass
class Chunk:
    runs: list[tuple[Any, ...]] = field(default_factory=list)
    transitions: list[tuple[Any, ...]] = field(default_factory=list)
    expectations: list[tuple[Any, ...]] = field(default_factory=list)
    acks: list[tuple[Any, ...]] = field(default_factory=list)


def chunks(start: int, stop: int, now: datetime, stamp: Any) -> Iterator[Chunk]:
    """Rows for runs number start..stop-1; `stamp` turns a datetime into a column value."""
    for first in range(start, stop, CHUNK):
        chunk = Chunk()
        for number in range(first, min(first + CHUNK, stop)):
            _add_run(chunk, number, now, stamp)
        yield chunk


def _add_run(chunk: Chunk, number: int, now: datetime, stamp: Any) -> None:
    run_id = str(uuid.uuid4())
    created = now - SPACING * (number + 1)
    started = created + timedelta(milliseconds=5)
    finished = created + timedelta(milliseconds=60)
    c, s, f = stamp(created), stamp(started), stamp(finished)
    deadline = stamp(started + timedelta(milliseconds=DEADLINE_MS))
    denied = number % DENIED_EVERY == 0
    tenant = f"tenant-{number % 10}"
    if denied:
        error = "authorization denied: DENIED"
        chunk.runs.append((
            run_id, tenant, "bench.noop", json.dumps({"n": number}), "FAILED", 1, 1, 0,
            RUN_TIMEOUT_MS, None, None, error, None, None, None, None,
            s, deadline, 1, False, None, None, None, c, s,
        ))  # fmt: skip
        chunk.transitions.append(
            (run_id, 1, 1, "CREATED", "FAILED", s, error, '{"decision": "DENIED"}')
        )
        chunk.acks.append((run_id, *FINALIZE_RUN, "FAILED", None, s, False, None))
    else:
        chunk.runs.append((
            run_id, tenant, "bench.noop", json.dumps({"n": number}), "COMPLETED", 1, 1, 0,
            RUN_TIMEOUT_MS, None, None, None, True, True, f, COMPLETE,
            s, deadline, len(PATH), False, None, None, None, c, f,
        ))  # fmt: skip
        for seq, (source, target, reason, details) in enumerate(PATH, start=1):
            at = s if seq <= 2 else f
            chunk.transitions.append((run_id, seq, 1, source, target, at, reason, details))
        for domain, action in DEFAULT_DOMAIN_EXPECTATIONS:
            chunk.acks.append((run_id, domain, action, None, None, s, False, None))
        chunk.acks.append((run_id, *FINALIZE_RUN, "COMPLETED", None, f, False, None))
    for position, (domain, action) in enumerate(CONTRACT):
        chunk.expectations.append((run_id, domain, action, DEADLINE_MS, position))


def preload(url: str, start: int, stop: int) -> None:
    """Add finished runs number start..stop-1 to the database at `url`."""
    if stop <= start:
        return
    now = datetime.now(UTC)
    if make_url(url).get_backend_name() == "sqlite":
        _preload_sqlite(url, start, stop, now)
    else:
        _preload_postgres(url, start, stop, now)
    # The load leaves gigabytes of dirty pages for the kernel to write back;
    # a measurement started during that writeback times its fsyncs behind it.
    # A database of that size in service is not being written back wholesale,
    # so each level starts with the disk settled. (In-process, the claim's SQL
    # took the same time at 0 and 1M runs; over HTTP the claim ratio at 1M
    # went from 1.50 to 1.10 with this, but 1.35 at 100k: still noisy.)
    os.sync()


def _sqlite_stamp(value: datetime) -> str:
    # the text SQLAlchemy's SQLite DateTime writes: naive UTC with microseconds
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _preload_sqlite(url: str, start: int, stop: int, now: datetime) -> None:
    path = make_url(url).database
    assert path, "a file database is needed"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        for chunk in chunks(start, stop, now, _sqlite_stamp):
            conn.execute("BEGIN")
            conn.executemany(_insert_sql("runs", RUN_COLUMNS), chunk.runs)
            conn.executemany(_insert_sql("transitions", TRANSITION_COLUMNS), chunk.transitions)
            conn.executemany(_insert_sql("expectations", EXPECTATION_COLUMNS), chunk.expectations)
            conn.executemany(_insert_sql("acks", ACK_COLUMNS), chunk.acks)
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _preload_postgres(url: str, start: int, stop: int, now: datetime) -> None:
    with psycopg.connect(libpq_url(url)) as conn:
        for chunk in chunks(start, stop, now, lambda value: value):
            with conn.cursor() as cursor:
                for table, columns, rows in (
                    ("runs", RUN_COLUMNS, chunk.runs),
                    ("transitions", TRANSITION_COLUMNS, chunk.transitions),
                    ("expectations", EXPECTATION_COLUMNS, chunk.expectations),
                    ("acks", ACK_COLUMNS, chunk.acks),
                ):
                    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
            conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")
        # the same settling on the server's side: its dirty buffers written out
        # now rather than by a checkpoint in the middle of the measurement
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")
