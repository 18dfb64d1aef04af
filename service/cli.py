"""The `rok` command line: one click group, `rok`, and its commands.

    rok serve | db upgrade|current|check | keys … | verify | worker | domain | demo |
    bench | runs …

Each command lives with what it drives (keys_cli, verify_cli, worker.cli,
demo.cli, bench.runner, ops_cli) and is added to the group here. Heavy
imports (FastAPI, uvicorn) happen inside the command that needs them, so
`rok db …` stays fast and a bad configuration is reported before the app is
even imported.

A command's callback returns its exit code. Exit codes: 0 done; 1 the
database failed (or the answer is no: a broken history, a refused move);
2 the operator must fix something first (a usage error, a malformed variable,
a schema behind the code); `rok runs …` adds 3 not found, 4 unauthorized or
forbidden, 5 the service cannot be reached (service.ops_cli.exits).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

import click
from sqlalchemy.exc import SQLAlchemyError

from service import __version__
from service.bench.runner import bench
from service.config import Settings
from service.demo.cli import demo
from service.domains.defaults import reference_domains
from service.errors import ConfigError, RokError
from service.keys_cli import keys
from service.model.phases import utc_now
from service.ops_cli import runs
from service.store import migrations
from service.store.database import Database
from service.store.dialects import dialect_for
from service.store.keys import KeyStore
from service.verify_cli import verify
from service.worker.cli import worker_command
from service.worker.domain_cli import domain_command

# what the demo's pool and its reference domains need, and nothing more
DEMO_SCOPES = (
    "runs:read",
    "runs:write",
    "worker",
    "acks:incidents",
    "acks:policies",
    "acks:logs",
)
EXIT_DATABASE_ERROR = 1
EXIT_USAGE = 2
DEMO_STOP_TIMEOUT_S = 10.0


@click.group(
    name="rok",
    help="rok: the run orchestration authority.",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="rok", message="%(prog)s %(version)s")
def rok() -> None:
    pass


@rok.command(help="Serve the REST API (configured by ROK_* variables).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to bind.")
@click.option(
    "--migrate",
    is_flag=True,
    help="Upgrade the database schema first, instead of refusing to start when it is behind.",
)
@click.option(
    "--demo",
    "with_demo",
    is_flag=True,
    help="Also run the demo: example runs driven by a worker pool and the reference domains.",
)
@click.option(
    "--access-log/--no-access-log",
    default=None,
    help="Log one line per request (default: on, off with --demo).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Server processes on one port (uvicorn's multi-process mode), PostgreSQL only. "
    "Each is a replica: its own pool, LISTEN connection and sweeper (one sweeps at a "
    "time); /metrics counters and ROK_RATE_LIMIT are per process. Refused on SQLite, "
    "where a check waiting in one process would see another's acks only at its "
    "once-a-second re-read.",
)
def serve(
    host: str,
    port: int,
    migrate: bool,
    with_demo: bool,
    access_log: bool | None,
    workers: int,
) -> int:
    from service.api.auth import is_loopback_host

    settings = Settings.from_env()
    if not settings.auth_required and not is_loopback_host(host):
        raise ConfigError(
            f"ROK_AUTH=off is served only on loopback, not on --host {host}: anyone who "
            "reaches the port could drive and read every run. Create keys "
            "(`rok keys create`) and serve with ROK_AUTH=required"
        )
    if workers > 1 and dialect_for(settings.database_url).name != "postgresql":
        raise ConfigError(
            f"--workers {workers} needs PostgreSQL; ROK_DATABASE_URL is SQLite, which rok "
            "serves from one process: its write lock and the wake-ups of waiting governance "
            "checks and claims do not reach another process (they would wait for the "
            "once-a-second re-read). Serve SQLite with --workers 1, or set "
            "ROK_DATABASE_URL=postgresql+psycopg://…"
        )
    if migrate:
        migrations.upgrade(settings.database_url)
    else:
        migrations.check_schema(settings.database_url)
    import uvicorn

    from service.api.app import create_app
    from service.api.observability import configure_logging

    configure_logging(settings)  # once, before uvicorn: its access log takes rok's format

    def run_server(access_log_default: bool) -> None:
        # several processes: each builds its own app (settings from the same
        # environment, read again in the worker), so uvicorn needs the factory's name
        app = create_app(settings) if workers == 1 else "service.api.app:create_app"
        uvicorn.run(
            app,
            factory=workers > 1,
            workers=workers,
            host=host,
            port=port,
            log_config=None,  # keep rok's logging (ROK_LOG_FORMAT, ROK_LOG_LEVEL)
            log_level=settings.log_level.lower(),
            access_log=access_log_default if access_log is None else access_log,
        )

    if not with_demo:
        run_server(access_log_default=True)
        return 0
    # uvicorn takes SIGTERM while it serves, shuts down, puts the previous
    # handler back and raises the signal again: without a handler of ours the
    # default one ended this process there, and the demo outlived it
    previous = signal.signal(signal.SIGTERM, _terminated)
    demo_process: subprocess.Popen[bytes] | None = None
    try:
        demo_process = _start_demo(host, port, settings)
        # the demo's story is one line per run; a line per request would bury it
        run_server(access_log_default=False)
    except Terminated:
        _stop(demo_process)
        # end as a SIGTERM'd server ends (status -SIGTERM), now that nothing is left behind
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(demo_process)
    return 0


class Terminated(BaseException):
    """SIGTERM reached `rok serve --demo`: unwind so the demo is stopped too."""


def _terminated(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL if it has not exited in DEMO_STOP_TIMEOUT_S."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=DEMO_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _start_demo(host: str, port: int, settings: Settings) -> subprocess.Popen[bytes]:
    """The demo as its own process: a real client of the API, like any worker.

    It waits for /healthz itself, submits its runs, prints a line per finished
    run, then keeps its pool serving so runs created from /docs are picked up.
    With auth required it gets a key of its own (tenant "demo"), as any worker would.
    """
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    env = dict(os.environ)
    if settings.auth_required:
        env["ROK_API_KEY"] = _demo_key(settings.database_url)
    return subprocess.Popen(
        [sys.executable, "-m", "service.demo", "--url", url, "--serve"], env=env
    )


def _demo_key(database_url: str) -> str:
    database = Database(database_url, pool_size=1)
    try:
        _, secret = KeyStore(database).create("demo", DEMO_SCOPES, "rok serve --demo", utc_now())
    finally:
        database.dispose()
    return secret


DATABASE_URL = click.option(
    "--url", metavar="URL", help="Database URL (default: ROK_DATABASE_URL)."
)


@rok.group(help="Manage the database schema.")
def db() -> None:
    pass


@db.command(help="Migrate the schema to the revision this code needs.")
@DATABASE_URL
def upgrade(url: str | None) -> int:
    url = _database_url(url)
    before = migrations.upgrade(url)
    after = migrations.current_revision(url)
    where = migrations.display_url(url)
    if before == after:
        click.echo(f"database at {where} is already at schema revision {after}")
    else:
        click.echo(f"database at {where} upgraded from {before or 'nothing'} to {after}")
    return 0


@db.command(help="Print the schema revision of the database.")
@DATABASE_URL
def current(url: str | None) -> int:
    url = _database_url(url)
    revision = migrations.current_revision(url)
    head = migrations.head_revision()
    note = "up to date" if revision == head else f"the code needs {head}"
    click.echo(f"{revision or 'none'} ({note})")
    return 0


@db.command(help="Exit 2 unless the schema is the revision this code needs.")
@DATABASE_URL
def check(url: str | None) -> int:
    """A readiness probe or deploy gate."""
    migrations.check_schema(_database_url(url))
    return 0


def _database_url(url: str | None) -> str:
    return url or Settings.from_env().database_url


for command in (
    keys,
    verify,
    # `rok worker` runs a handler dict with the reference domains: composed here, not in the pool
    worker_command(default_domains=reference_domains),
    domain_command(default_domains=reference_domains),
    demo,
    bench,
    runs,
):
    rok.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = rok.main(args=argv, prog_name="rok", standalone_mode=False)
    except click.ClickException as exc:  # usage errors (2), a refused answer (1, 3, 4, 5)
        exc.show()
        return exc.exit_code
    except click.Abort:  # Ctrl-C at a prompt
        click.echo("rok: aborted", err=True)
        return 130
    except RokError as exc:  # ConfigError, SchemaOutOfDate: the message says what to do
        click.echo(f"rok: {exc}", err=True)
        return EXIT_USAGE
    except SQLAlchemyError as exc:
        # the driver's first line says what went wrong; the traceback would bury it
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        click.echo(f"rok: database error: {reason}", err=True)
        return EXIT_DATABASE_ERROR
    return code if isinstance(code, int) else 0
