"""Database.write(durable=False): committed, and the connection is durable again after."""

from __future__ import annotations

from sqlalchemy import text

from service.store.database import Database

FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL


def test_a_lighter_write_commits_and_leaves_connections_durable(migrated_url: str) -> None:
    database = Database(migrated_url, pool_size=1)
    try:
        with database.write(durable=False) as conn:
            if database.is_sqlite:
                assert conn.execute(text("PRAGMA synchronous")).scalar() == 1
            else:
                assert conn.execute(text("SHOW synchronous_commit")).scalar() == "off"
            conn.execute(text("CREATE TABLE scratch (n INTEGER)"))
            conn.execute(text("INSERT INTO scratch VALUES (1)"))
        with database.write() as conn:  # the same pooled connection (pool_size=1)
            if database.is_sqlite:
                assert conn.execute(text("PRAGMA synchronous")).scalar() == FULL
            else:
                assert conn.execute(text("SHOW synchronous_commit")).scalar() == "on"
        with database.read() as conn:
            assert conn.execute(text("SELECT n FROM scratch")).scalar() == 1
    finally:
        database.dispose()


def test_a_failed_lighter_write_rolls_back(migrated_url: str) -> None:
    database = Database(migrated_url, pool_size=1)
    try:
        with database.write() as conn:
            conn.execute(text("CREATE TABLE scratch (n INTEGER)"))
        try:
            with database.write(durable=False) as conn:
                conn.execute(text("INSERT INTO scratch VALUES (1)"))
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        with database.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM scratch")).scalar() == 0
    finally:
        database.dispose()
