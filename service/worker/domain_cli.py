"""`rok domain NAME --url URL [--key KEY]`: one governance domain as its own process.

NAME is a domain the program registering the command provides (the `rok`
command: incidents, policies, traces). The process long-polls
GET /domains/{feed}/owed for runs whose execution ended and acks what each
still owes, through the domain's own logic (service.worker.domain_feed says
what a remote domain can and cannot know). Its key needs `acks:<feed>` for
each feed it reads (traces acks as `logs`); a service with ROK_AUTH=off
needs none. Traces export through OTEL_* like the service's. SIGTERM or
Ctrl-C ends the poll in flight and exits 0.

Run it instead of that domain in the worker pool, never beside it: both
would ack each run, and the second ack is recorded as drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from service.errors import ConfigError
from service.telemetry import WORKER, install_tracing
from service.worker.cli import DEFAULT_URL, service_options
from service.worker.client import RokClient
from service.worker.domain_feed import MAX_WAIT_MS, DomainFeed, feed_domains
from service.worker.hooks import Domain

DomainCatalog = Callable[[str | None], Sequence[Domain]]
"""Builds the domains a NAME can pick from, given --policies (the reference ones:
service.domains.reference_domains). The worker package names no domain
implementation: whoever registers the command hands one in."""


def domain_command(default_domains: DomainCatalog) -> click.Command:
    """The `domain` command of `rok`, choosing among `default_domains`."""

    def run(name: str, **options: Any) -> int:
        log_level = options.pop("log_level")
        logging.basicConfig(
            level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)
        return run_domain(name, default_domains, **options)

    return click.Command(
        "domain",
        callback=run,
        params=[
            click.Argument(["name"]),
            *service_options(" with acks:<domain>"),
            click.Option(["--policies"], default=None, help="Policy rules file (policies)."),
            click.Option(
                ["--limit"],
                type=click.IntRange(1, 500),
                default=50,
                show_default=True,
                help="Runs per poll.",
            ),
            click.Option(
                ["--wait-ms"],
                type=click.IntRange(0, MAX_WAIT_MS),
                default=30_000,
                show_default=True,
                help="How long one poll waits for a run, in milliseconds.",
            ),
            click.Option(
                ["--concurrency"],
                type=click.IntRange(1, 1000),
                default=8,
                show_default=True,
                help="Runs handled at once.",
            ),
            click.Option(["--log-level"], default="INFO", show_default=True, help="Logging level."),
        ],
        help=__doc__,
        short_help="Run one governance domain (incidents, policies, traces) on the owed feed.",
    )


def run_domain(
    name: str,
    default_domains: DomainCatalog,
    *,
    url: str = DEFAULT_URL,
    key: str | None = None,
    policies: str | None = None,
    limit: int = 50,
    wait_ms: int = 30_000,
    concurrency: int = 8,
) -> int:
    """Serve the domain `name` until SIGTERM or SIGINT; the exit code (2: no such domain).

    Plain arguments, so any command-line front end can call it.
    """
    try:
        # before the domains are built: the traces domain records with the process's provider
        tracing = install_tracing(WORKER)
    except ConfigError as exc:
        print(f"rok domain: {exc}", file=sys.stderr)
        return 2
    try:
        domains = {d.name: d for d in default_domains(policies)}
        domain = domains.get(name)
        if domain is None:
            known = ", ".join(sorted(domains))
            print(f"rok domain: no domain named {name!r}; known: {known}", file=sys.stderr)
            return 2
        asyncio.run(_serve(domain, url, key, limit, wait_ms, concurrency))
        return 0
    finally:
        tracing.shutdown()


async def _serve(
    domain: Domain, url: str, key: str | None, limit: int, wait_ms: int, concurrency: int
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # not on Windows' loop
            loop.add_signal_handler(sig, stop.set)
    async with RokClient(url, api_key=key) as client:
        feed = DomainFeed(client, domain, limit=limit, wait_ms=wait_ms, concurrency=concurrency)
        feeds = ", ".join(feed_domains(domain))
        logging.getLogger("rok.domain").info(
            "domain %s reading the owed feed of %s at %s", domain.name, feeds, url
        )
        await feed.run(stop)


def main(argv: Sequence[str], default_domains: DomainCatalog) -> int:
    """`rok domain …` on its own, for a program that embeds it: `argv` starts with `domain`."""
    group = click.Group("rok", commands=[domain_command(default_domains)])
    try:
        code = group.main(list(argv), prog_name="rok", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return code if isinstance(code, int) else 0
