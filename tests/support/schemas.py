"""What a database's catalog says its schema is, as comparable text.

Alembic's compare_metadata checks columns, types, defaults, keys and which
columns an index covers, but not the WHERE clause of a partial index, and our
invariants live in partial indexes (uq_acks_one_finalize_run). So the tests
also compare the catalog of a migrated database with that of one built by
metadata.create_all: every table, constraint and index definition, as the
database itself renders them. `table_names` is the short answer: which tables exist.
"""

from __future__ import annotations

from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.pool import NullPool

_POSTGRES_CATALOG = """
SELECT 'column ' || table_name || '.' || column_name,
       concat_ws(' ', ordinal_position, data_type, character_maximum_length,
                 is_nullable, column_default)
  FROM information_schema.columns
 WHERE table_schema = current_schema() AND table_name <> 'alembic_version'
UNION ALL
SELECT 'constraint ' || conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
  FROM pg_constraint
 WHERE connamespace = current_schema()::regnamespace
   AND conrelid::regclass::text <> 'alembic_version'
UNION ALL
SELECT 'index ' || indexname, replace(indexdef, ' ON ' || schemaname || '.', ' ON ')
  FROM pg_indexes
 WHERE schemaname = current_schema() AND tablename <> 'alembic_version'
"""

_SQLITE_CATALOG = """
SELECT type || ' ' || name, sql FROM sqlite_master
 WHERE sql IS NOT NULL AND tbl_name <> 'alembic_version'
"""


def catalog(url: str) -> dict[str, str]:
    """{"index ix_runs_claimable": "CREATE INDEX … WHERE available", …} for rok's tables."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return _read(conn)
    finally:
        engine.dispose()


def _read(conn: Connection) -> dict[str, str]:
    query = _POSTGRES_CATALOG if conn.dialect.name == "postgresql" else _SQLITE_CATALOG
    # whitespace is layout, not schema; nor is the quoting of a name (SQLite
    # quotes a table that a migration rebuilt and renamed: CREATE TABLE "runs"),
    # nor the order of a table's constraints (a rebuild lists them as it likes)
    return {
        name: _constraints_sorted(" ".join(str(sql).split()).replace('"', ""))
        for name, sql in conn.execute(text(query))
    }


_CONSTRAINT_STARTS = ("CONSTRAINT ", "PRIMARY KEY", "FOREIGN KEY", "UNIQUE ", "CHECK ")


def _constraints_sorted(sql: str) -> str:
    """A CREATE TABLE with its table constraints in sorted order (columns stay in order)."""
    if not sql.startswith("CREATE TABLE") or "(" not in sql:
        return sql
    head, _, body = sql.partition("(")
    body = body.rstrip().removesuffix(")").strip()
    parts: list[str] = []
    depth, current = 0, ""
    for char in body:
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    parts.append(current.strip())
    columns = [p for p in parts if not p.startswith(_CONSTRAINT_STARTS)]
    constraints = sorted(p for p in parts if p.startswith(_CONSTRAINT_STARTS))
    return f"{head}( {', '.join(columns + constraints)} )"


def table_names(url: str) -> set[str]:
    """The names of the tables in the database at `url` (Alembic's version table included)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# Every table the migrations create, written out (not read from the metadata) so a
# table that appears or goes missing fails the tests that upgrade a database.
ROK_TABLES = frozenset(
    {
        "runs",
        "transitions",
        "expectations",
        "acks",
        "api_keys",
        "idempotency_keys",
        "events",
        "pending_expectations",
        "concurrency_limits",
        "run_concurrency_keys",
    }
)
