"""Scratch databases for a bench run: created empty, migrated, always removed.

SQLite: a file in a temporary directory. PostgreSQL: a database of its own
(`CREATE DATABASE rok_bench_…`) on the server given by --postgres-url, so the
bench never touches a database someone else is using; it is dropped at the end.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.bench.children import lifeline
from service.store import tables

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def schema_method() -> str:
    """How the schema is made: the project's migrations when the CLI has them."""
    if importlib.util.find_spec("service.cli") is not None:
        return "python -m service db upgrade (alembic head)"
    return "service.store.tables.metadata.create_all"


def create_schema(url: str) -> None:
    if importlib.util.find_spec("service.cli") is not None:
        subprocess.run(
            [sys.executable, "-m", "service", "db", "upgrade", "--url", url],
            check=True,
            capture_output=True,
            preexec_fn=lifeline(),
        )
        return
    engine = create_engine(url)
    try:
        tables.metadata.create_all(engine)
    finally:
        engine.dispose()


@contextlib.contextmanager
def scratch_database(backend: str, name: str, postgres_url: str) -> Iterator[str]:
    """An empty database with rok's schema, as a URL; removed when the block ends."""
    if backend == "sqlite":
        directory = tempfile.mkdtemp(prefix=f"rok-bench-{name}-")
        try:
            url = f"sqlite:///{directory}/{name}.db"
            create_schema(url)
            yield url
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    database = f"rok_bench_{name}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        try:
            url = make_url(postgres_url).set(database=database).render_as_string(False)
            create_schema(url)
            yield url
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    finally:
        admin.dispose()


def postgres_version(postgres_url: str) -> str:
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar())
    finally:
        engine.dispose()
