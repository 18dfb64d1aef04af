"""`rok verify [--run ID]`: recompute sealed histories straight from the database.

Like `rok db`, it needs the database and the history key, not a running
service. It prints one line per run whose stored history no longer matches
its seals, then a summary; exit 0 when every chain holds, 1 otherwise, 2 when
it cannot start (no key, a schema behind the code, an unknown --run). It never creates a key:
with a fresh one every chain would look broken.
"""

from __future__ import annotations

from collections.abc import Iterable

import click

from service.config import Settings
from service.errors import RunNotFound
from service.store import migrations
from service.store.chain import history_key_for
from service.store.database import Database
from service.store.runs import RunStore
from service.store.signals import Signals
from service.store.verify import ChainReport

EXIT_BROKEN = 1
EXIT_USAGE = 2


@click.command(
    help="Recompute each run's sealed history; exit 1 naming every run that no longer holds."
)
@click.option("--run", "run_id", metavar="ID", help="Verify this run only (default: every run).")
@click.option("--url", metavar="URL", help="Database URL (default: ROK_DATABASE_URL).")
def verify(run_id: str | None, url: str | None) -> int:
    settings = Settings.from_env()
    url = url or settings.database_url
    key = history_key_for(settings, create=False)
    migrations.check_schema(url)
    database = Database(url, pool_size=1)
    try:
        store = RunStore(database, Signals(), history_key=key)
        if run_id is None:
            return _print(store.verify_all())
        try:
            return _print([store.verify(run_id)])
        except RunNotFound as missing:
            click.echo(f"rok: {missing}", err=True)
            return EXIT_USAGE  # not a verdict: 1 would say the run was tampered with
    finally:
        database.dispose()


def _print(reports: Iterable[ChainReport]) -> int:
    verified = broken = 0
    for report in reports:
        verified += 1
        if report.first_broken is not None:
            broken += 1
            where = report.first_broken
            print(
                f"run {report.run_id}: history broken at {where.kind} {where.seq} "
                f"({report.checked} {'entry' if report.checked == 1 else 'entries'} checked)",
                flush=True,
            )
    print(
        f"verified {verified} run{'s' if verified != 1 else ''}: "
        + (f"{broken} broken" if broken else "every history holds")
    )
    return EXIT_BROKEN if broken else 0
