"""`rok keys create|list|revoke`: API keys, managed on the database directly.

Like `rok db`, these commands need the database, not a running service: the
operator who holds the database creates the first (admin) key. The new key is
printed alone on the last line of `create`'s output, once; only a hash of its
secret is stored, so it cannot be shown again.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TypeAlias

from service.config import Settings
from service.model.phases import utc_now
from service.store.database import Database
from service.store.keys import ACKS_PREFIX, FIXED_SCOPES, KeyNotFound, KeyStore

if TYPE_CHECKING:
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_NOT_FOUND = 1


def _store(args: argparse.Namespace) -> tuple[Database, KeyStore]:
    database = Database(args.url or Settings.from_env().database_url, pool_size=1)
    return database, KeyStore(database)


def keys_create(args: argparse.Namespace) -> int:
    database, keys = _store(args)
    try:
        key, secret = keys.create(args.tenant, args.scope, args.name, utc_now())
    finally:
        database.dispose()
    print(f"created key {key.id} for tenant {key.tenant_id}: {', '.join(sorted(key.scopes))}")
    print("send it as `Authorization: Bearer <key>`; it is shown only this once:")
    print(secret)
    return 0


def keys_list(args: argparse.Namespace) -> int:
    database, keys = _store(args)
    try:
        listed = keys.list()
    finally:
        database.dispose()
    for key in listed:
        state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        scopes = ",".join(sorted(key.scopes))
        print(f"{key.id}  {key.tenant_id}  {scopes}  {state}  {key.name or ''}".rstrip())
    return 0


def keys_revoke(args: argparse.Namespace) -> int:
    database, keys = _store(args)
    try:
        key = keys.revoke(args.key_id, utc_now())
    except KeyNotFound as missing:
        print(f"rok: {missing}")
        return EXIT_NOT_FOUND
    finally:
        database.dispose()
    assert key.revoked_at is not None
    print(f"key {key.id} revoked at {key.revoked_at.isoformat()}")
    return 0


def register(commands: Subcommands) -> None:
    parser = commands.add_parser("keys", help="create, list and revoke API keys")
    actions = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="create a key; prints it once, alone on the last line"
    )
    create.add_argument("--tenant", required=True, help="the tenant whose runs the key acts on")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        help=f"repeatable: {', '.join(FIXED_SCOPES)} or {ACKS_PREFIX}<domain>",
    )
    create.add_argument("--name", help="what the key is for (shown by `rok keys list`)")
    create.set_defaults(func=keys_create)
    listing = actions.add_parser("list", help="list keys (ids, tenants, scopes; never secrets)")
    listing.set_defaults(func=keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key: refused from the next request on")
    revoke.add_argument("key_id", help="the key's id, as `rok keys list` shows it")
    revoke.set_defaults(func=keys_revoke)
    for action in (create, listing, revoke):
        action.add_argument("--url", help="database URL (default: ROK_DATABASE_URL)")
