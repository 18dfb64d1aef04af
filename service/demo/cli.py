"""`rok demo [--url URL] [--key KEY] [--serve]`, also `python -m service.demo`."""

from __future__ import annotations

import click

from service.demo.runner import DEFAULT_URL, run_demo_command


@click.command(help="Submit example runs and drive them with a WorkerPool.")
@click.option(
    "--url", default=DEFAULT_URL, show_default=True, help="The rok service to send the runs to."
)
@click.option(
    "--key",
    default=None,
    help="API key (default: ROK_API_KEY; none for a service with ROK_AUTH=off).",
)
@click.option(
    "--serve",
    is_flag=True,
    help="After the batch, keep the pool serving the demo handlers (Ctrl-C stops it).",
)
def demo(url: str, key: str | None, serve: bool) -> int:
    return run_demo_command(url, key, serve)
