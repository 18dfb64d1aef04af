"""`rok worker --app module:object --concurrency N --url URL [--key KEY]`.

`object` is either a dict of handlers ({name: callable}), run with the
default domains of the `rok` command (the three reference domains), or a
factory called as `factory(url=..., concurrency=...)` that returns a
configured WorkerPool.

The API key (--key, or ROK_API_KEY, which keeps it out of the process list)
is sent as `Authorization: Bearer <key>`; a service with ROK_AUTH=off needs none.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

from service.errors import ConfigError
from service.telemetry import WORKER, install_tracing
from service.worker.hooks import Domain
from service.worker.pool import WorkerPool
from service.worker.startup import GovernedServiceError

DEFAULT_URL = "http://127.0.0.1:8000"

DomainFactory = Callable[[str | None], Sequence[Domain]]
"""Builds the domains a handler-dict app runs with, from --policies (a rules file or None).

The command is handed one by the program that registers it (service.cli):
the worker package itself names no domain implementation.
"""


class AppError(ValueError):
    """--app names something that is not a handler dict nor a WorkerPool factory."""


@dataclass(frozen=True)
class WorkerOptions:
    """What a `rok worker` command line asks for."""

    app: str
    default_domains: DomainFactory
    url: str = DEFAULT_URL
    key: str | None = None
    concurrency: int = 4
    worker_id: str | None = None
    lease_ms: int = 15_000
    policies: str | None = None
    no_domains: bool = False
    drain_timeout: float = 30.0
    log_level: str = "INFO"


class WorkerCommand(click.Command):
    """`rok worker`, bound to the domains a handler-dict app runs with."""

    def __init__(self, default_domains: DomainFactory) -> None:
        self.default_domains = default_domains
        super().__init__(
            "worker",
            callback=self._run,
            params=_PARAMETERS,
            help=__doc__,
            short_help="Run a WorkerPool that claims and drives runs.",
        )

    def options(self, argv: Sequence[str]) -> WorkerOptions:
        """The options `rok worker ARGV` runs with (click.UsageError for a bad line)."""
        with self.make_context("worker", list(argv)) as context:
            return WorkerOptions(default_domains=self.default_domains, **context.params)

    def _run(self, **params: Any) -> int:
        return run_worker(WorkerOptions(default_domains=self.default_domains, **params))


def worker_command(default_domains: DomainFactory) -> WorkerCommand:
    """The `worker` command; `default_domains` builds a handler-dict app's domains."""
    return WorkerCommand(default_domains)


def service_options(key_scopes: str) -> list[click.Parameter]:
    """--url and --key, as every command that talks to the service over HTTP takes them."""
    return [
        click.Option(
            ["--url"],
            envvar="ROK_URL",
            default=DEFAULT_URL,
            show_default=True,
            help="The rok service (env ROK_URL).",
        ),
        click.Option(
            ["--key"],
            envvar="ROK_API_KEY",
            default=None,
            help=f"API key{key_scopes} (default: ROK_API_KEY; none with ROK_AUTH=off).",
        ),
    ]


_POSITIVE = click.IntRange(min=1)
_PARAMETERS: list[click.Parameter] = [
    click.Option(["--app"], required=True, help="module:object (a handler dict or a factory)."),
    *service_options(""),
    click.Option(
        ["--concurrency"], type=_POSITIVE, default=4, show_default=True, help="Runs at once."
    ),
    click.Option(["--worker-id"], default=None, help="The pool's id (default: host/pid/random)."),
    click.Option(
        ["--lease-ms"],
        type=_POSITIVE,
        default=15_000,
        show_default=True,
        help="Lease length asked for on each claim and heartbeat, in milliseconds.",
    ),
    click.Option(["--policies"], default=None, help="Policy rules file (TOML or YAML)."),
    click.Option(
        ["--no-domains"], is_flag=True, help="Run a handler dict without the default domains."
    ),
    click.Option(
        ["--drain-timeout"],
        type=float,
        default=30.0,
        show_default=True,
        help="Seconds the runs in hand get to finish after SIGTERM.",
    ),
    click.Option(["--log-level"], default="INFO", show_default=True, help="Logging level."),
]


def run_worker(options: WorkerOptions) -> int:
    logging.basicConfig(
        level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        # before the pool and its domains are built: they trace with the process's provider
        tracing = install_tracing(WORKER)
        pool = load_app(options)
    except (AppError, ConfigError) as exc:
        print(f"rok worker: {exc}", file=sys.stderr)
        return 2
    try:
        pool.run()
    except GovernedServiceError as exc:  # ROK_ENABLED=false against a governing service
        print(f"rok worker: {exc}", file=sys.stderr)
        return 2
    finally:
        tracing.shutdown()  # export the last runs' spans
    return 0


def load_app(options: WorkerOptions) -> WorkerPool:
    target = _import(options.app)
    if isinstance(target, WorkerPool):
        return _with_key(target, options.key)
    if isinstance(target, Mapping):
        return WorkerPool(
            options.url,
            dict(target),
            concurrency=options.concurrency,
            worker_id=options.worker_id,
            lease_ms=options.lease_ms,
            domains=[] if options.no_domains else options.default_domains(options.policies),
            drain_timeout_s=options.drain_timeout,
            api_key=options.key,
        )
    if callable(target):
        pool = target(url=options.url, concurrency=options.concurrency)
        if not isinstance(pool, WorkerPool):
            raise AppError(f"{options.app}() returned {type(pool).__name__}, not a WorkerPool")
        return _with_key(pool, options.key)
    raise AppError(f"{options.app} is a {type(target).__name__}: need a handler dict or a factory")


def _with_key(pool: WorkerPool, key: str | None) -> WorkerPool:
    """A pool the app built uses --key (or ROK_API_KEY) when one is given."""
    if key is not None:
        pool.api_key = key  # read when the pool starts serving
    return pool


def _import(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AppError(f"--app {spec!r}: expected module:object, e.g. myapp.jobs:handlers")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppError(f"--app {spec!r}: cannot import {module_name}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppError(f"--app {spec!r}: {module_name} has no {attribute}") from None
    return target


def main(argv: Sequence[str], default_domains: DomainFactory) -> int:
    """`rok worker …` on its own, for a program that embeds it: `argv` starts with `worker`."""
    group = click.Group("rok", commands=[worker_command(default_domains)])
    try:
        code = group.main(list(argv), prog_name="rok", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return code if isinstance(code, int) else 0
