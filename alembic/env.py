"""Alembic environment for rok: one migration history for SQLite and PostgreSQL.

The URL comes from the caller (`config.attributes["url"]`, set by
service.store.migrations) or from ROK_DATABASE_URL, the variable the service
itself reads, so `alembic upgrade head` and `rok db upgrade` migrate the same
database. Connection setup (WAL, locking) lives in service.store.migrations.
An installed rok runs this file from its wheel (service/_alembic/env.py), so it
imports nothing but `service` and Alembic.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from sqlalchemy.engine import make_url

from alembic import context
from service.config import DEFAULT_DATABASE_URL
from service.store.migrations import migration_connection
from service.store.tables import metadata

config = context.config
target_metadata = metadata

if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = config.attributes.get("url") or os.environ.get("ROK_DATABASE_URL", "").strip()
    return str(url or DEFAULT_DATABASE_URL)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def run_migrations_offline() -> None:
    """`alembic upgrade --sql`: print the SQL instead of running it."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=is_sqlite(url),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = database_url()
    with migration_connection(url) as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things; batch mode copies the table instead.
            render_as_batch=is_sqlite(url),
            # One transaction for the whole upgrade on both backends (Alembic
            # assumes SQLite cannot do transactional DDL; it can).
            transactional_ddl=True,
        )
        with context.begin_transaction():
            # Read under the lock, so of migrators started together the caller
            # learns whether it did the work (service.store.migrations.upgrade).
            config.attributes["revision_before"] = context.get_context().get_current_revision()
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
