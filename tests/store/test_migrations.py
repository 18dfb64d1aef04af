"""The one migration history builds exactly the declared schema, on both backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from service.errors import SchemaOutOfDate
from service.store import migrations
from service.store.migrations import REPO_ROOT
from service.store.tables import metadata
from tests.support.databases import backend_of, fresh_database, sqlite_url
from tests.support.schemas import ROK_TABLES, catalog, table_names


def test_an_empty_database_upgrades_to_head(database_url: str) -> None:
    assert migrations.current_revision(database_url) is None

    migrations.upgrade(database_url)

    assert migrations.current_revision(database_url) == migrations.head_revision()
    assert table_names(database_url) == ROK_TABLES | {"alembic_version"}


def test_upgrading_twice_changes_nothing(migrated_url: str) -> None:
    before = catalog(migrated_url)

    migrations.upgrade(migrated_url)

    assert migrations.current_revision(migrated_url) == migrations.head_revision()
    assert catalog(migrated_url) == before


def test_check_schema_refuses_an_empty_database_and_says_what_to_run(database_url: str) -> None:
    with pytest.raises(SchemaOutOfDate) as refused:
        migrations.check_schema(database_url)

    message = str(refused.value)
    assert "has no rok schema" in message
    assert "rok db upgrade" in message
    assert migrations.head_revision() in message


def test_check_schema_refuses_a_database_behind_the_code(migrated_url: str) -> None:
    with migrations.migration_connection(migrated_url) as conn, conn.begin():
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))

    with pytest.raises(SchemaOutOfDate, match="does not know"):
        migrations.check_schema(migrated_url)


def test_check_schema_passes_once_upgraded(migrated_url: str) -> None:
    migrations.check_schema(migrated_url)


def test_check_schema_of_a_missing_sqlite_file_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"

    with pytest.raises(SchemaOutOfDate):
        migrations.check_schema(f"sqlite:///{path}")

    assert not path.exists()


def test_check_schema_hides_the_password(tmp_path: Path) -> None:
    assert "s3cret" not in migrations.display_url("postgresql+psycopg://rok:s3cret@db/rok")


def test_migrated_schema_matches_the_metadata(migrated_url: str) -> None:
    engine = create_engine(migrated_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_migrated_schema_is_exactly_what_create_all_builds(
    migrated_url: str, tmp_path: Path
) -> None:
    # compare_metadata ignores the WHERE of partial indexes; the catalogs do not.
    with fresh_database(backend_of(migrated_url), tmp_path) as reference_url:
        engine = create_engine(reference_url, poolclass=NullPool)
        metadata.create_all(engine)
        engine.dispose()
        expected = catalog(reference_url)

    assert catalog(migrated_url) == expected
    assert "WHERE" in expected["index uq_acks_one_finalize_run"]


def test_downgrade_to_base_and_up_again(migrated_url: str) -> None:
    migrations.downgrade(migrated_url, "base")

    assert migrations.current_revision(migrated_url) is None
    assert table_names(migrated_url) == {"alembic_version"}

    migrations.upgrade(migrated_url)

    assert migrations.current_revision(migrated_url) == migrations.head_revision()
    assert table_names(migrated_url) == ROK_TABLES | {"alembic_version"}


def test_migrators_started_together_take_turns(database_url: str) -> None:
    # Replicas all started with `rok serve --migrate`: every one must succeed.
    # Processes, not threads: Alembic keeps its migration context in module globals.
    command = [sys.executable, "-m", "service", "db", "upgrade", "--url", database_url]
    migrators = [
        subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    results = [migrator.communicate(timeout=120) for migrator in migrators]

    assert [m.returncode for m in migrators] == [0] * 4, results
    outputs = sorted(out.decode() for out, _ in results)
    assert sum("upgraded from nothing" in out for out in outputs) == 1, outputs
    assert migrations.current_revision(database_url) == migrations.head_revision()


def test_a_sqlite_database_is_left_in_wal_mode(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)

    migrations.upgrade(url)

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


def test_the_config_is_found_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    config = migrations.alembic_config("sqlite://")

    assert Path(config.get_main_option("script_location") or "").is_dir()
    assert migrations.head_revision()
