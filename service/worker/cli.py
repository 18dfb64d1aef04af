"""`rok worker --app module:object --concurrency N --url URL [--key KEY]`.

`object` is either a dict of handlers ({name: callable}), run with the
default domains of the `rok` command (the three reference domains), or a
factory called as `factory(url=..., concurrency=...)` that returns a
configured WorkerPool.

The API key (--key, or ROK_API_KEY, which keeps it out of the process list)
is sent as `Authorization: Bearer <key>`; a service with ROK_AUTH=off needs none.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from service.errors import ConfigError
from service.telemetry import WORKER, install_tracing
from service.worker.hooks import Domain
from service.worker.pool import WorkerPool
from service.worker.startup import GovernedServiceError

DEFAULT_URL = "http://127.0.0.1:8000"

DomainFactory = Callable[[str | None], Sequence[Domain]]
"""Builds the domains a handler-dict app runs with, from --policies (a rules file or None).

The command is handed one by the program that registers it (service.cli,
`python -m service.worker`): the worker package itself names no domain
implementation.
"""


class AppError(ValueError):
    """--app names something that is not a handler dict nor a WorkerPool factory."""


def register(subparsers: Any, default_domains: DomainFactory) -> argparse.ArgumentParser:
    """Add the `worker` command to a `rok` argparse subparsers object.

    `default_domains` builds the domains of a handler-dict app unless --no-domains.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="run a WorkerPool that claims and drives runs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--app", required=True, help="module:object (handler dict or factory)")
    parser.add_argument("--url", default=os.environ.get("ROK_URL", DEFAULT_URL))
    parser.add_argument(
        "--key",
        default=os.environ.get("ROK_API_KEY") or None,
        help="API key (default: ROK_API_KEY; none for a service with ROK_AUTH=off)",
    )
    parser.add_argument("--concurrency", type=_positive, default=4)
    parser.add_argument("--worker-id", default=None, help="default: host/pid/random")
    parser.add_argument("--lease-ms", type=_positive, default=15_000)
    parser.add_argument("--policies", default=None, help="policy rules file (TOML or YAML)")
    parser.add_argument("--no-domains", action="store_true", help="run without the default domains")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="seconds (SIGTERM)")
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(func=run_worker_command, default_domains=default_domains)
    return parser


def run_worker_command(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        # before the pool and its domains are built: they trace with the process's provider
        tracing = install_tracing(WORKER)
        pool = load_app(args)
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


def load_app(args: argparse.Namespace) -> WorkerPool:
    target = _import(args.app)
    if isinstance(target, WorkerPool):
        return _with_key(target, args.key)
    if isinstance(target, Mapping):
        default_domains: DomainFactory = args.default_domains
        return WorkerPool(
            args.url,
            dict(target),
            concurrency=args.concurrency,
            worker_id=args.worker_id,
            lease_ms=args.lease_ms,
            domains=[] if args.no_domains else default_domains(args.policies),
            drain_timeout_s=args.drain_timeout,
            api_key=args.key,
        )
    if callable(target):
        pool = target(url=args.url, concurrency=args.concurrency)
        if not isinstance(pool, WorkerPool):
            raise AppError(f"{args.app}() returned {type(pool).__name__}, not a WorkerPool")
        return _with_key(pool, args.key)
    raise AppError(f"{args.app} is a {type(target).__name__}: need a handler dict or a factory")


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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def main(argv: list[str] | None, default_domains: DomainFactory) -> int:
    """`python -m service.worker`: the `worker` command alone."""
    parser = argparse.ArgumentParser(prog="rok")
    register(parser.add_subparsers(dest="command", required=True), default_domains)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
