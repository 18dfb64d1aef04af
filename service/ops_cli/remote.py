"""`rok runs ls|show|fail|cancel`: what an operator asks a running service, over HTTP."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import click

from service.ops_cli.client import Service, service_options
from service.ops_cli.render import run_page, run_table

PHASES = (
    "CREATED",
    "AUTHORIZED",
    "EXECUTING",
    "GOVERNANCE_CHECK",
    "FINALIZING",
    "COMPLETED",
    "FAILED",
)
PAGE_LIMIT = 500  # the most GET /runs gives in one page


class RunId(click.ParamType[str]):
    """A run's id: a UUID, written as the service writes it."""

    name = "RUN_ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            self.fail(f"{value!r} is not a run id (a UUID such as {uuid.UUID(int=0)})", param, ctx)


RUN_ID = RunId()
AS_JSON = click.option(
    "--json", "as_json", is_flag=True, help="Print the service's JSON instead of a table."
)


@click.command(name="ls", help="List runs, newest first.")
@click.option(
    "--phase",
    type=click.Choice(PHASES, case_sensitive=False),
    help="Only runs in this phase.",
)
@click.option("--tenant", help="Only this tenant's runs.")
@click.option("--handler", help="Only runs of this handler.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="At most this many runs.",
)
@AS_JSON
@service_options
def list_runs(
    phase: str | None,
    tenant: str | None,
    handler: str | None,
    limit: int,
    as_json: bool,
    url: str,
    key: str | None,
) -> int:
    filters = {"phase": phase.upper() if phase else None, "tenant_id": tenant, "handler": handler}
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    with Service(url, key) as service:
        while len(found) < limit:
            params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
            params["limit"] = min(PAGE_LIMIT, limit - len(found))
            if cursor is not None:
                params["cursor"] = cursor
            page = service.get("/runs", params)
            found += page["items"]
            cursor = page.get("next_cursor")
            if cursor is None:
                break
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif found:
        click.echo("\n".join(run_table(found)))
    else:
        click.echo("no runs", err=True)
    return 0


@click.command(help="Show one run: its timeline, its contract against its acks, the verdict.")
@click.argument("run_id", type=RUN_ID)
@AS_JSON
@service_options
def show(run_id: str, as_json: bool, url: str, key: str | None) -> int:
    with Service(url, key) as service:
        run = service.get(f"/runs/{run_id}")
    if as_json:
        click.echo(json.dumps(run, indent=2))
    else:
        click.echo("\n".join(run_page(run, datetime.now(UTC))))
    return 0


@click.command(help="Fail a run now, from any phase that is not final (an operator override).")
@click.argument("run_id", type=RUN_ID)
@click.option("--reason", required=True, help="Why: recorded as the run's error.")
@service_options
def fail(run_id: str, reason: str, url: str, key: str | None) -> int:
    with Service(url, key) as service:
        run = service.post(f"/runs/{run_id}/fail", {"error": reason})
    click.echo(f"run {run['id']}: {run['phase']} ({run.get('error')})")
    return 0


@click.command(
    help="Cancel a run: one that is not executing fails now; an executing one is asked to "
    "stop and its worker fails it."
)
@click.argument("run_id", type=RUN_ID)
@click.option("--reason", default=None, help="Why: recorded in the run's error.")
@service_options
def cancel(run_id: str, reason: str | None, url: str, key: str | None) -> int:
    body = {"reason": reason} if reason is not None else {}
    with Service(url, key) as service:
        run = service.post(f"/runs/{run_id}/cancel", body)
    if run.get("phase") in ("COMPLETED", "FAILED"):
        click.echo(f"run {run['id']}: {run['phase']} ({run.get('error')})")
    else:
        holder = (run.get("lease") or {}).get("worker_id", "its worker")
        click.echo(f"run {run['id']}: cancel requested; {holder} fails it (it is {run['phase']})")
    return 0
