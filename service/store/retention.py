"""Retention: read out and delete runs that finished before a cutoff, a batch at a time.

A run is finished when its phase is terminal (COMPLETED or FAILED); it
finished at its `updated_at`, written by its terminal move and by nothing
after it (a late ack advances the chain head, not `updated_at`). A live run is
never selected, so never exported or deleted, whatever the cutoff.

Each batch is its own short transaction, so the service keeps serving while
a year of runs is read out or deleted: a read snapshot per page for the
export; for the prune, a write transaction that locks the batch's rows (on
PostgreSQL, skipping any row a late ack holds right now: the next prune takes
it), deletes their children, then the runs. An ack that waited for such a row
finds no run (404), as for any unknown run.

Both walk `(updated_at, id)` of finished runs. A partial index on exactly that
(`ix_runs_finished`, see FINISHED_RUN) makes each batch read only its own rows;
without it every batch scans the runs table.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Table, and_, delete, func, or_, select, text

from service.store.database import Database
from service.store.records import RunRecord
from service.store.rows import load_records, row_from_mapping
from service.store.tables import LIVE_RUN, metadata, runs

# Spelled as an index's WHERE would be, so SQLite's planner can match a partial index on it.
FINISHED_RUN = "phase IN ('COMPLETED', 'FAILED')"


def _finished_before(before: datetime) -> Any:
    return and_(text(FINISHED_RUN), runs.c.updated_at < before)


def run_children() -> list[tuple[Table, Column[Any]]]:
    """Every table whose rows belong to a run, with its column that names the run.

    Read from the schema (a foreign key to runs.id), so a table added later
    with such a key is pruned with its runs.
    """
    return [
        (table, fk.parent)
        for table in metadata.sorted_tables
        for fk in table.foreign_keys
        if fk.column is runs.c.id
    ]


def count_finished(db: Database, before: datetime) -> int:
    """How many runs finished before `before`."""
    with db.read() as conn:
        query = select(func.count()).select_from(runs).where(_finished_before(before))
        return int(conn.execute(query).scalar_one())


def count_live(db: Database) -> int:
    """How many runs are not finished (what a prune keeps, whatever its cutoff)."""
    with db.read() as conn:
        query = select(func.count()).select_from(runs).where(text(LIVE_RUN))
        return int(conn.execute(query).scalar_one())


def finished_records(db: Database, before: datetime, page_size: int) -> Iterator[RunRecord]:
    """Each run that finished before `before`, oldest first, with its history, contract and acks.

    A page of `page_size` runs per read transaction; the next page starts
    after the last (updated_at, id) read, so runs finishing meanwhile after
    the cutoff are never reached, and none is read twice.
    """
    after: tuple[datetime, str] | None = None
    while True:
        query = select(runs).where(_finished_before(before))
        if after is not None:
            at, run_id = after
            query = query.where(
                or_(runs.c.updated_at > at, and_(runs.c.updated_at == at, runs.c.id > run_id))
            )
        query = query.order_by(runs.c.updated_at, runs.c.id).limit(page_size)
        with db.read() as conn:
            rows = [row_from_mapping(r._mapping) for r in conn.execute(query)]
            records = load_records(conn, rows)
        yield from records
        if len(rows) < page_size:
            return
        after = (rows[-1].updated_at, rows[-1].id)


def prune_batch(db: Database, before: datetime, batch_size: int) -> int:
    """Delete up to `batch_size` runs that finished before `before`, oldest first, with
    every row that belongs to them, in one transaction; return how many runs went."""
    query = (
        select(runs.c.id)
        .where(_finished_before(before))
        .order_by(runs.c.updated_at, runs.c.id)
        .limit(batch_size)
    )
    with db.write() as conn:
        ids = [row.id for row in conn.execute(db.dialect.skip_locked(query))]
        if not ids:
            return 0
        return _delete_runs(conn, ids)


def _delete_runs(conn: Connection, ids: list[str]) -> int:
    for table, run_id in reversed(run_children()):
        conn.execute(delete(table).where(run_id.in_(ids)))
    # the phase again: a run is terminal for good, but a delete never relies on that alone
    deleted = conn.execute(delete(runs).where(runs.c.id.in_(ids), text(FINISHED_RUN)))
    return int(deleted.rowcount)


def prune_finished(db: Database, before: datetime, batch_size: int) -> Iterator[int]:
    """`prune_batch` until none is left; yields each batch's count as it commits."""
    while True:
        deleted = prune_batch(db, before, batch_size)
        if deleted == 0:
            return
        yield deleted
