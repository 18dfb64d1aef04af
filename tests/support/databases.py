"""A fresh database per test, on SQLite and on PostgreSQL.

SQLite: a new file in the test's tmp_path. PostgreSQL: a new schema in the
server's database (ROK_TEST_POSTGRES_URL), put first on the search_path of
every connection through the URL, so the tables, Alembic's version table and
any subprocess given the URL all land in it; it is dropped after the test.
Schemas rather than databases because CREATE DATABASE is slow and needs more
rights; unique names because several people may run the suite on one server.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

POSTGRES_URL_VARIABLE = "ROK_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_VARIABLE = "ROK_REQUIRE_POSTGRES"
BACKENDS = ("sqlite", "postgres")


def postgres_server_url() -> str:
    """The PostgreSQL test server's URL; skips the test (or fails it, in CI) when unset."""
    url = os.environ.get(POSTGRES_URL_VARIABLE, "").strip()
    if url:
        return url
    if os.environ.get(REQUIRE_POSTGRES_VARIABLE) == "1":
        pytest.fail(
            f"{REQUIRE_POSTGRES_VARIABLE}=1 but {POSTGRES_URL_VARIABLE} is not set: "
            "point it at a PostgreSQL server, e.g. "
            "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
    pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set")


def with_search_path(url: str, schema: str) -> str:
    """`url` whose connections use only `schema` (psycopg `options`, libpq syntax).

    application_name carries the schema too, so teardown can find every
    connection a test left open.
    """
    parsed = make_url(url)
    given = parsed.query.get("options") or ()
    options = " ".join([*([given] if isinstance(given, str) else given), f"-csearch_path={schema}"])
    query = {"options": options, "application_name": schema}
    return parsed.update_query_dict(query).render_as_string(hide_password=False)


@contextlib.contextmanager
def postgres_schema(server_url: str) -> Iterator[str]:
    """A URL on a new, empty schema, dropped with everything in it afterwards."""
    schema = f"rok_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server_url, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield with_search_path(server_url, schema)
    finally:
        with admin.begin() as conn:
            # A connection the test leaked would hold locks and make DROP wait
            # forever; end them so a leak fails loudly elsewhere, not as a hang.
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name AND pid <> pg_backend_pid()"
                ),
                {"name": schema},
            )
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def sqlite_url(directory: Path, name: str = "rok.db") -> str:
    return f"sqlite:///{directory / name}"


@contextlib.contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    """The URL of a new, empty database on `backend` ("sqlite" or "postgres")."""
    if backend == "sqlite":
        # a new name each time, so one test can ask for two databases
        yield sqlite_url(directory, f"rok-{uuid.uuid4().hex[:8]}.db")
    elif backend == "postgres":
        with postgres_schema(postgres_server_url()) as url:
            yield url
    else:
        raise ValueError(f"unknown backend {backend!r}; use one of {BACKENDS}")


def backend_of(url: str) -> str:
    return "postgres" if make_url(url).get_backend_name() == "postgresql" else "sqlite"
