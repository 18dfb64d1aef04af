"""`rok runs export|prune --finished-before DATE`: finished runs out of the hot tables.

Straight from the database, like `rok db` and `rok verify` (--url, default
ROK_DATABASE_URL), while the service keeps serving: every page or batch is
its own short transaction (service.store.retention). Export first, then
prune what was exported: both select the same runs for the same DATE.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any
from uuid import UUID

import click

from service.config import Settings
from service.model.phases import utc_now
from service.ops_cli.dates import FORMAT, INSTANT
from service.ops_cli.exits import USAGE, CommandFailed
from service.store import migrations, retention
from service.store.database import Database

EXPORT_PAGE_SIZE = 200
DEFAULT_BATCH_SIZE = 500

FINISHED_BEFORE = click.option(
    "--finished-before",
    "before",
    type=INSTANT,
    required=True,
    help=f"Only runs that finished (COMPLETED or FAILED) before this: {FORMAT}.",
)
DATABASE_URL = click.option(
    "--url", metavar="URL", help="Database URL (default: ROK_DATABASE_URL)."
)


@contextlib.contextmanager
def _database(url: str | None) -> Iterator[Database]:
    url = url or Settings.from_env().database_url
    migrations.check_schema(url)
    database = Database(url, pool_size=1)
    try:
        yield database
    finally:
        database.dispose()


@click.command(
    help="Write each run that finished before DATE as one JSON line: the run as "
    "GET /runs/{id} shows it (history, contract, acks, reconciliation, governance verdict)."
)
@FINISHED_BEFORE
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    help="File to write (default: standard output).",
)
@DATABASE_URL
def export(before: datetime, out: str, url: str | None) -> int:
    with _database(url) as database:
        try:
            sink = click.open_file(out, "w", encoding="utf-8")
        except OSError as exc:
            raise CommandFailed(f"cannot write {out}: {exc.strerror or exc}", USAGE) from None
        with sink:
            written = export_runs(database, before, sink)
    where = "standard output" if out == "-" else out
    cutoff = before.isoformat()
    click.echo(f"exported {_runs(written)} finished before {cutoff} to {where}", err=True)
    return 0


def export_runs(database: Database, before: datetime, sink: IO[str]) -> int:
    # here, not at the top: the other commands need not import FastAPI
    from service.api.presenters import run_json

    written = 0
    now = utc_now()
    for record in retention.finished_records(database, before, EXPORT_PAGE_SIZE):
        sink.write(json.dumps(run_json(record, now), default=_encode, ensure_ascii=False) + "\n")
        written += 1
    return written


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@click.command(
    help="Delete the runs that finished before DATE, with their history, contract and acks, "
    "a batch per transaction; live runs are never touched. Without --yes, only says how many."
)
@FINISHED_BEFORE
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Runs deleted per transaction.",
)
@click.option("--yes", is_flag=True, help="Delete (without it: a dry run that only counts).")
@DATABASE_URL
def prune(before: datetime, batch_size: int, yes: bool, url: str | None) -> int:
    cutoff = before.isoformat()
    with _database(url) as database:
        if not yes:
            found = retention.count_finished(database, before)
            live = retention.count_live(database)
            click.echo(
                f"would delete {_runs(found)} finished before {cutoff} "
                f"({_live(live)}); run again with --yes to delete"
            )
            return 0
        deleted = batches = 0
        for count in retention.prune_finished(database, before, batch_size):
            deleted += count
            batches += 1
            if sys.stderr.isatty():
                click.echo(f"  {deleted} deleted…", err=True)
        live = retention.count_live(database)
        alerts = retention.prune_events(database, before, batch_size)
    click.echo(
        f"deleted {_runs(deleted)} finished before {cutoff} in {batches} "
        f"batch{'es' if batches != 1 else ''} ({_live(live)}), and {alerts} "
        f"delivered or failed alert{'s' if alerts != 1 else ''}"
    )
    return 0


def _runs(count: int) -> str:
    return f"{count} run{'s' if count != 1 else ''}"


def _live(count: int) -> str:
    return f"{count} live run{'s' if count != 1 else ''} kept"
