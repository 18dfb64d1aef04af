"""The `rok` command line: `rok serve`, `rok db upgrade|current|check`, `rok keys …`,
`rok verify`.

Each command is one registrar: a function that adds the command's sub-parser
and sets `func` on it (argparse's convention), the function that carries the
command out and returns the exit code. A new command (worker, demo, bench) is
one more registrar in COMMANDS. Heavy imports (FastAPI, uvicorn) happen inside
the command that needs them, so `rok db …` stays fast and a bad configuration
is reported before the app is even imported.

Exit codes: 0 done; 1 the database failed; 2 the operator must fix something
first (a malformed variable, a schema behind the code).
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

from sqlalchemy.exc import SQLAlchemyError

from service.bench.runner import register as register_bench
from service.config import Settings
from service.demo.cli import register as register_demo
from service.domains.defaults import reference_domains
from service.errors import ConfigError, RokError
from service.keys_cli import register as register_keys
from service.model.phases import utc_now
from service.store import migrations
from service.store.database import Database
from service.store.keys import KeyStore
from service.verify_cli import register as register_verify
from service.worker.cli import register as register_worker

if TYPE_CHECKING:
    # argparse has no public name for what add_subparsers() returns.
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    Registrar: TypeAlias = Callable[[Subcommands], object]

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


def serve(args: argparse.Namespace) -> int:
    from service.api.auth import is_loopback_host

    settings = Settings.from_env()
    if not settings.auth_required and not is_loopback_host(args.host):
        raise ConfigError(
            f"ROK_AUTH=off is served only on loopback, not on --host {args.host}: anyone who "
            "reaches the port could drive and read every run. Create keys "
            "(`rok keys create`) and serve with ROK_AUTH=required"
        )
    if args.migrate:
        migrations.upgrade(settings.database_url)
    else:
        migrations.check_schema(settings.database_url)
    import uvicorn

    from service.api.app import create_app
    from service.api.observability import configure_logging

    configure_logging(settings)  # once, before uvicorn: its access log takes rok's format

    demo = _start_demo(args.host, args.port, settings) if args.demo else None
    try:
        uvicorn.run(
            create_app(settings),
            host=args.host,
            port=args.port,
            log_config=None,  # keep rok's logging (ROK_LOG_FORMAT, ROK_LOG_LEVEL)
            log_level=settings.log_level.lower(),
            # the demo's story is one line per run; a line per request would bury it
            access_log=(not args.demo) if args.access_log is None else args.access_log,
        )
    finally:
        if demo is not None:
            demo.terminate()
            demo.wait(timeout=10)
    return 0


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


def register_serve(commands: Subcommands) -> None:
    parser = commands.add_parser("serve", help="serve the REST API (configured by ROK_* variables)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default %(default)s)")
    parser.add_argument(
        "--migrate",
        action="store_true",
        help="upgrade the database schema first, instead of refusing to start when it is behind",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="also run the demo: example runs driven by a worker pool and the reference domains",
    )
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log one line per request (default: on, off with --demo)",
    )
    parser.set_defaults(func=serve)


def db_upgrade(args: argparse.Namespace) -> int:
    url = _database_url(args)
    before = migrations.upgrade(url)
    after = migrations.current_revision(url)
    where = migrations.display_url(url)
    if before == after:
        print(f"database at {where} is already at schema revision {after}")
    else:
        print(f"database at {where} upgraded from {before or 'nothing'} to {after}")
    return 0


def db_current(args: argparse.Namespace) -> int:
    url = _database_url(args)
    current = migrations.current_revision(url)
    head = migrations.head_revision()
    note = "up to date" if current == head else f"the code needs {head}"
    print(f"{current or 'none'} ({note})")
    return 0


def db_check(args: argparse.Namespace) -> int:
    """Exit 2 unless the schema is at head: a readiness probe or deploy gate."""
    migrations.check_schema(_database_url(args))
    return 0


def register_db(commands: Subcommands) -> None:
    parser = commands.add_parser("db", help="manage the database schema")
    actions = parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    for name, run, text in [
        ("upgrade", db_upgrade, "migrate the schema to the revision this code needs"),
        ("current", db_current, "print the schema revision of the database"),
        ("check", db_check, "exit 2 unless the schema is the revision this code needs"),
    ]:
        action = actions.add_parser(name, help=text)
        action.add_argument("--url", help="database URL (default: ROK_DATABASE_URL)")
        action.set_defaults(func=run)


def _database_url(args: argparse.Namespace) -> str:
    url: str | None = args.url
    return url or Settings.from_env().database_url


COMMANDS: list[Registrar] = [
    register_serve,
    register_db,
    # `rok worker` runs a handler dict with the reference domains: composed here, not in the pool
    functools.partial(register_worker, default_domains=reference_domains),
    register_keys,
    register_verify,
    register_demo,
    register_bench,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rok", description="rok: the run orchestration authority")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.func
    try:
        return run(args)
    except RokError as exc:  # ConfigError, SchemaOutOfDate: the message says what to do
        print(f"rok: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SQLAlchemyError as exc:
        # the driver's first line says what went wrong; the traceback would bury it
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"rok: database error: {reason}", file=sys.stderr)
        return EXIT_DATABASE_ERROR
