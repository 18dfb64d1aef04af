"""Column types and helpers shared by the tables (service.store.tables).

Kept apart so the schema module holds only tables and their indexes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Column, DateTime, Integer, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from service.model.phases import RunPhase

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a bigint.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on both databases.

    SQLite stores no zone; without this, a run read back after a restart
    would carry naive timestamps and its JSON would change.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# The database keeps phase values to the seven (migration 0003); the table of
# legal moves is enforced where moves are written (service.store.transaction).
PHASE_VALUES = ", ".join(f"'{p.value}'" for p in RunPhase)


def phase_check(column: str, table: str) -> CheckConstraint:
    return CheckConstraint(f"{column} IN ({PHASE_VALUES})", name=f"ck_{table}_{column}")


def sealed_columns() -> list[Column[Any]]:
    """Who wrote an entry, and its place and seal in the run's chain (migration 0004)."""
    return [
        Column("actor", String(64), nullable=True),
        Column("chain_seq", Integer, nullable=True),
        Column("hash", String(64), nullable=True),
    ]
