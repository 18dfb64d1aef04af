"""`rok keys create|list|revoke`: API keys, managed on the database directly.

Like `rok db`, these commands need the database, not a running service: the
operator who holds the database creates the first (admin) key. The new key is
printed alone on the last line of `create`'s output, once; only a hash of its
secret is stored, so it cannot be shown again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from service.config import Settings
from service.model.phases import utc_now
from service.store.database import Database
from service.store.keys import ACKS_PREFIX, FIXED_SCOPES, KeyNotFound, KeyStore

EXIT_NOT_FOUND = 1

DATABASE_URL = click.option(
    "--url", metavar="URL", help="Database URL (default: ROK_DATABASE_URL)."
)


@contextmanager
def _store(url: str | None) -> Iterator[KeyStore]:
    database = Database(url or Settings.from_env().database_url, pool_size=1)
    try:
        yield KeyStore(database)
    finally:
        database.dispose()


@click.group(help="Create, list and revoke API keys.")
def keys() -> None:
    pass


@keys.command(help="Create a key; prints it once, alone on the last line.")
@click.option("--tenant", required=True, help="The tenant whose runs the key acts on.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help=f"Repeatable: {', '.join(FIXED_SCOPES)} or {ACKS_PREFIX}<domain>.",
)
@click.option("--name", default=None, help="What the key is for (shown by `rok keys list`).")
@DATABASE_URL
def create(tenant: str, scopes: tuple[str, ...], name: str | None, url: str | None) -> int:
    with _store(url) as store:
        key, secret = store.create(tenant, list(scopes), name, utc_now())
    click.echo(f"created key {key.id} for tenant {key.tenant_id}: {', '.join(sorted(key.scopes))}")
    click.echo("send it as `Authorization: Bearer <key>`; it is shown only this once:")
    click.echo(secret)
    return 0


@keys.command(name="list", help="List keys (ids, tenants, scopes; never secrets).")
@DATABASE_URL
def list_keys(url: str | None) -> int:
    with _store(url) as store:
        listed = store.list()
    for key in listed:
        state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        scopes = ",".join(sorted(key.scopes))
        click.echo(f"{key.id}  {key.tenant_id}  {scopes}  {state}  {key.name or ''}".rstrip())
    return 0


@keys.command(
    help="Revoke the key KEY_ID (its id, as `rok keys list` shows it): refused from the "
    "next request on."
)
@click.argument("key_id")
@DATABASE_URL
def revoke(key_id: str, url: str | None) -> int:
    try:
        with _store(url) as store:
            key = store.revoke(key_id, utc_now())
    except KeyNotFound as missing:
        click.echo(f"rok: {missing}", err=True)
        return EXIT_NOT_FOUND
    assert key.revoked_at is not None
    click.echo(f"key {key.id} revoked at {key.revoked_at.isoformat()}")
    return 0
