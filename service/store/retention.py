"""Retention: read out and delete runs that finished before a cutoff, a batch at a time.

A run is finished when its phase is terminal (COMPLETED or FAILED); it
finished at its `updated_at`, written by its terminal move and by nothing
after it (a late ack advances the chain head, not `updated_at`). A live run is
never selected, so never exported or deleted, whatever the cutoff.

The service keeps serving meanwhile: both walk the runs in id order, a page
after the last id read, each page read in a snapshot of its own (reads block
no writer, on either database); the prune then deletes that page in a short
write transaction of its own, by primary key. On SQLite, where one writer at
a time holds the file, the lock is held for a batch's deletes only, never for
the search: a walk of every run costs one pass over the table, however many
batches, and needs no index of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Select, Table, and_, delete, func, select, text

from service.store.database import Database
from service.store.records import RunRecord
from service.store.rows import load_records, row_from_mapping
from service.store.tables import LIVE_RUN, events, metadata, runs

FINISHED_RUN = "phase IN ('COMPLETED', 'FAILED')"
# The same test, written so that no planner answers it from ix_runs_phase_created:
# SQLite did (two phase ranges, then every finished run sorted for each page) instead of
# walking the primary key and stopping after a page.
FINISHED_BY_WALK = "(phase || '') IN ('COMPLETED', 'FAILED')"


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
    query = (
        select(func.count()).select_from(runs).where(text(FINISHED_RUN), runs.c.updated_at < before)
    )
    with db.read() as conn:
        return int(conn.execute(query).scalar_one())


def count_live(db: Database) -> int:
    """How many runs are not finished (what a prune keeps, whatever its cutoff)."""
    with db.read() as conn:
        query = select(func.count()).select_from(runs).where(text(LIVE_RUN))
        return int(conn.execute(query).scalar_one())


def _page(query: Select[Any], before: datetime, after: str | None, size: int) -> Select[Any]:
    """The next `size` runs of the walk that finished before `before`, after the id `after`."""
    query = query.where(text(FINISHED_BY_WALK), runs.c.updated_at < before)
    if after is not None:
        query = query.where(runs.c.id > after)
    return query.order_by(runs.c.id).limit(size)


def finished_records(db: Database, before: datetime, page_size: int) -> Iterator[RunRecord]:
    """Each run that finished before `before`, in id order, with its history, contract and acks."""
    after: str | None = None
    while True:
        with db.read() as conn:
            rows = [
                row_from_mapping(r._mapping)
                for r in conn.execute(_page(select(runs), before, after, page_size))
            ]
            records = load_records(conn, rows)
        yield from records
        if len(rows) < page_size:
            return
        after = rows[-1].id


def prune_finished(db: Database, before: datetime, batch_size: int) -> Iterator[int]:
    """Delete the runs that finished before `before`, with every row that belongs to them,
    `batch_size` runs per write transaction; yield each batch's count once it committed."""
    after: str | None = None
    while True:
        with db.read() as conn:
            ids = list(conn.execute(_page(select(runs.c.id), before, after, batch_size)).scalars())
        if not ids:
            return
        yield _delete_batch(db, ids, before)
        if len(ids) < batch_size:
            return
        after = ids[-1]


def prune_events(db: Database, before: datetime, batch_size: int) -> int:
    """Delete the alerts created before `before` that are done (delivered or given up),
    `batch_size` per write transaction, through ix_events_created; how many.

    Events have no foreign key to their run (an alert outlives it), so they are
    pruned by their own age; one still to be delivered is never deleted.
    """
    done = events.c.state != "pending"
    deleted = 0
    while True:
        with db.write() as conn:
            page = (
                select(events.c.id)
                .where(events.c.created_at < before, done)
                .order_by(events.c.created_at, events.c.id)
                .limit(batch_size)
            )
            ids = list(conn.execute(page).scalars())
            if ids:
                conn.execute(delete(events).where(events.c.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < batch_size:
            return deleted


def _delete_batch(db: Database, ids: list[str], before: datetime) -> int:
    # checked again under the lock; on PostgreSQL a row a late ack holds right now
    # is passed over (the next prune takes it), and that ack then finds no run: 404
    held = select(runs.c.id).where(
        and_(runs.c.id.in_(ids), text(FINISHED_RUN), runs.c.updated_at < before)
    )
    with db.write() as conn:
        locked = list(conn.execute(db.dialect.skip_locked(held)).scalars())
        return _delete_runs(conn, locked) if locked else 0


def _delete_runs(conn: Connection, ids: list[str]) -> int:
    for table, run_id in reversed(run_children()):
        conn.execute(delete(table).where(run_id.in_(ids)))
    return int(conn.execute(delete(runs).where(runs.c.id.in_(ids))).rowcount)
