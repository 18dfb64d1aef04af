"""Schema migrations: run Alembic from code, and refuse to serve an old schema.

One migration history (alembic/versions) serves SQLite and PostgreSQL. The
service never creates tables itself: `rok db upgrade` (or `rok serve
--migrate`) migrates, and `rok serve` checks the revision first, because
code running against a schema it was not written for can corrupt runs.

The scripts (env.py, versions/) have one home in the repository, the top-level
alembic/, which `alembic upgrade head` uses through alembic.ini. The wheel
carries a copy of that directory as service/_alembic (pyproject.toml), so an
installed rok finds its migrations beside its code, whatever the working
directory; in a checkout or an editable install, whose `service` is the
checkout's own, there is no such copy and rok uses alembic/ itself.
alembic.ini is not read here: it only holds what the plain `alembic` command
needs (where the scripts are, logging).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
from collections.abc import Iterator
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from alembic import command
from service.errors import RokError, SchemaOutOfDate
from service.store.dialects import dialect_for

# The checkout holding this file; in an installed wheel it names site-packages'
# parent instead, where no alembic/ is.
REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGED_SCRIPTS = "_alembic"  # where the wheel puts alembic/, inside the service package


class MigrationsNotFound(RokError):
    """rok's migration scripts are neither inside the installed package nor in a checkout."""


def script_location() -> Path:
    """The directory holding env.py and versions/: the wheel's copy first, then the checkout's."""
    # A wheel installs service/ as plain files, so the package's files are a directory.
    packaged = Path(str(importlib.resources.files("service"))) / PACKAGED_SCRIPTS
    checkout = REPO_ROOT / "alembic"
    for candidate in (packaged, checkout):
        if (candidate / "env.py").is_file() and (candidate / "versions").is_dir():
            return candidate
    raise MigrationsNotFound(
        f"rok's migrations are missing: neither {packaged} (an installed rok) nor "
        f"{checkout} (a checkout) holds env.py and versions/; reinstall rok from its wheel"
    )


def alembic_config(url: str) -> Config:
    """An Alembic config for `url` that works from any working directory."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    # No config file, so env.py leaves logging alone: alembic.ini's setup would
    # replace the logging of the process that called us (uvicorn's, pytest's).
    return config


def upgrade(url: str, revision: str = "head") -> str | None:
    """Migrate to `revision`; returns the revision the database was at before.

    Safe to call from several processes at once: they take turns (see
    migration_connection), and only the first finds work to do.
    """
    config = alembic_config(url)
    command.upgrade(config, revision)
    before: str | None = config.attributes.get("revision_before")
    return before


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    if head is None:
        raise RuntimeError(f"{script_location() / 'versions'} holds no migration")
    return head


def current_revision(url: str) -> str | None:
    """The database's revision; None for a database rok never migrated."""
    if _missing_sqlite_file(url):
        # Connecting would create an empty file, leaving a stray database
        # behind every mistyped path.
        return None
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def check_schema(url: str) -> None:
    """Raise SchemaOutOfDate unless the database is at the code's head revision."""
    current = current_revision(url)
    head = head_revision()
    if current == head:
        return
    where = f"database at {display_url(url)}"
    if current is None:
        state = "has no rok schema"
    elif not _known_revision(current):
        # Upgrading cannot help: the database was migrated by a newer rok.
        raise SchemaOutOfDate(
            f"{where} is at schema revision {current}, which this code does not know "
            f"(it needs {head}): run the rok version that migrated it"
        )
    else:
        state = f"is at schema revision {current}"
    raise SchemaOutOfDate(
        f"{where} {state}, the code needs {head}: run `rok db upgrade` "
        "(or start with `rok serve --migrate`)"
    )


def _known_revision(revision: str) -> bool:
    try:
        ScriptDirectory.from_config(alembic_config("")).get_revision(revision)
    except CommandError:
        return False
    return True


def display_url(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


@contextlib.contextmanager
def migration_connection(url: str) -> Iterator[Connection]:
    """A connection that alone may migrate this database until it closes (used by env.py).

    SQLite: the first statement takes the write lock (BEGIN IMMEDIATE) and the
    whole upgrade is one transaction, so a second migrator waits, then finds
    the work done. PostgreSQL: a session advisory lock per schema does the same
    across replicas; NullPool makes closing the connection really end the
    session, which releases the lock even when a migration fails.
    """
    dialect = dialect_for(url)
    engine = create_engine(url, poolclass=NullPool)
    dialect.configure(engine, migrating=True)
    try:
        with engine.connect() as connection:
            dialect.lock_migrations(connection)
            yield connection
    finally:
        engine.dispose()


def _missing_sqlite_file(url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return False
    return not os.path.exists(database)
