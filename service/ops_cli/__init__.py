"""`rok runs …`: the operator's commands.

Over HTTP, against a running service (ROK_URL, ROK_API_KEY): `ls`, `show`,
`fail`, `cancel`. On the database, like `rok db` (ROK_DATABASE_URL):
`export` and `prune`, for retention. Exit codes: service.ops_cli.exits.
"""

from __future__ import annotations

import click

from service.ops_cli.remote import cancel, fail, list_runs, show
from service.ops_cli.retention import export, prune

runs = click.Group(
    "runs",
    help="List, inspect, fail and cancel runs (over HTTP); export and prune finished ones "
    "(on the database).",
)
for command in (list_runs, show, fail, cancel, export, prune):
    runs.add_command(command)

__all__ = ["runs"]
