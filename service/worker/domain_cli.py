"""`rok domain NAME --url URL [--key KEY]`: one governance domain as its own process.

NAME is a domain the program registering the command provides (the `rok`
command: incidents, policies, traces). The process long-polls
GET /domains/{feed}/owed for runs whose execution ended and acks what each
still owes, through the domain's own logic (service.worker.domain_feed says
what a remote domain can and cannot know). Its key needs `acks:<feed>` for
each feed it reads (traces acks as `logs`); a service with ROK_AUTH=off
needs none. SIGTERM or Ctrl-C ends the poll in flight and exits 0.

Run it instead of that domain in the worker pool, never beside it: both
would ack each run, and the second ack is recorded as drift.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from service.worker.client import RokClient
from service.worker.domain_feed import MAX_WAIT_MS, DomainFeed, feed_domains
from service.worker.hooks import Domain

DEFAULT_URL = "http://127.0.0.1:8000"

DomainCatalog = Callable[[str | None, str | None], Sequence[Domain]]
"""Builds the domains a NAME can pick from, given --policies and --otlp-endpoint
(the reference ones: service.domains.reference_domains). The worker package
names no domain implementation: whoever registers the command hands one in."""


def register(subparsers: Any, default_domains: DomainCatalog) -> argparse.ArgumentParser:
    """Add the `domain` command to a `rok` argparse subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "domain",
        help="run one governance domain as its own process, on the owed feed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", help="the domain to run: incidents, policies or traces")
    parser.add_argument("--url", default=os.environ.get("ROK_URL", DEFAULT_URL))
    parser.add_argument(
        "--key",
        default=os.environ.get("ROK_API_KEY") or None,
        help="API key with acks:<domain> (default: ROK_API_KEY; none with ROK_AUTH=off)",
    )
    parser.add_argument("--policies", default=None, help="policy rules file (policies)")
    parser.add_argument("--otlp-endpoint", default=None, help="OTLP/HTTP traces endpoint (traces)")
    parser.add_argument("--limit", type=_bounded(1, 500), default=50, help="runs per poll")
    parser.add_argument(
        "--wait-ms", type=_bounded(0, MAX_WAIT_MS), default=30_000, help="long-poll wait"
    )
    parser.add_argument("--concurrency", type=_bounded(1, 1000), default=8)
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(func=run_domain_command, default_domains=default_domains)
    return parser


def run_domain_command(args: argparse.Namespace) -> int:
    """The argparse entry: `run_domain` with the parsed options."""
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return run_domain(
        args.name,
        args.default_domains,
        url=args.url,
        key=args.key,
        policies=args.policies,
        otlp_endpoint=args.otlp_endpoint,
        limit=args.limit,
        wait_ms=args.wait_ms,
        concurrency=args.concurrency,
    )


def run_domain(
    name: str,
    default_domains: DomainCatalog,
    *,
    url: str = DEFAULT_URL,
    key: str | None = None,
    policies: str | None = None,
    otlp_endpoint: str | None = None,
    limit: int = 50,
    wait_ms: int = 30_000,
    concurrency: int = 8,
) -> int:
    """Serve the domain `name` until SIGTERM or SIGINT; the exit code (2: no such domain).

    Plain arguments, so any command-line front end can call it.
    """
    domains = {d.name: d for d in default_domains(policies, otlp_endpoint)}
    domain = domains.get(name)
    if domain is None:
        known = ", ".join(sorted(domains))
        print(f"rok domain: no domain named {name!r}; known: {known}", file=sys.stderr)
        return 2
    asyncio.run(_serve(domain, url, key, limit, wait_ms, concurrency))
    return 0


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


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not within {low} … {high}")
        return value

    return parse


def main(argv: Sequence[str] | None, default_domains: DomainCatalog) -> int:
    """The `domain` command alone (for a program that is not `rok`, and the tests)."""
    parser = argparse.ArgumentParser(prog="rok")
    register(parser.add_subparsers(dest="command", required=True), default_domains)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
