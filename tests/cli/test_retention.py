"""`rok runs export|prune --finished-before DATE` on both backends.

Export writes the runs that finished before the date, one JSON line each with
their history, acks and verdict; prune deletes exactly those, a batch per
transaction, while the server keeps answering, and never a live run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from service.authority import Authority
from service.model.phases import RunPhase
from service.store import retention
from service.store.migrations import upgrade
from service.store.retention import run_children
from service.store.tables import runs
from tests.cli.conftest import REPO_ROOT, SERVER_ENV, age, rok, rok_here
from tests.support.chains import LIFECYCLE_ENTRIES, lifecycle, sealed_authority
from tests.support.databases import sqlite_url
from tests.support.runs import RunFactory
from tests.support.server import running_server

LONG_AGO = datetime(2025, 6, 1, tzinfo=UTC)
CUTOFF = "2026-01-01"


@pytest.fixture
def authority(migrated_url: str) -> Iterator[Authority]:
    current = sealed_authority(migrated_url)
    try:
        yield current
    finally:
        current.close()


def rows_of(url: str, run_ids: list[str]) -> int:
    """How many rows of `runs` and of every table that belongs to a run these runs have."""
    engine = create_engine(url, poolclass=NullPool)
    tables = [(runs, runs.c.id), *run_children()]
    try:
        with engine.connect() as conn:
            return sum(
                conn.execute(
                    select(func.count()).select_from(table).where(column.in_(run_ids))
                ).scalar_one()
                for table, column in tables
            )
    finally:
        engine.dispose()


def test_export_writes_each_finished_run_with_its_history_acks_and_verdict(
    migrated_url: str, authority: Authority, tmp_path: Path
) -> None:
    factory = RunFactory(authority)
    old = [lifecycle(authority), lifecycle(authority)]
    old_failure = factory.at(RunPhase.FAILED)
    live = factory.at(RunPhase.EXECUTING)
    recent = lifecycle(authority)
    age(migrated_url, [*old, old_failure, live], LONG_AGO)
    out = tmp_path / "runs.jsonl"

    done = rok(
        "runs", "export", "--finished-before", CUTOFF, "--out", str(out), "--url", migrated_url
    )

    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == (
        f"exported 3 runs finished before 2026-01-01T00:00:00+00:00 to {out}"
    )
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in exported) == sorted([*old, old_failure])
    assert live not in out.read_text() and recent not in out.read_text()
    completed = next(r for r in exported if r["id"] == old[0])
    assert completed["phase"] == "COMPLETED"
    assert [h["to"] for h in completed["history"]] == [
        "AUTHORIZED", "EXECUTING", "GOVERNANCE_CHECK", "FINALIZING", "COMPLETED",
    ]  # fmt: skip
    assert len(completed["history"]) + len(completed["acks"]) == LIFECYCLE_ENTRIES
    assert {"domain": "incidents", "action": "create_incident"}.items() <= (
        completed["acks"][0].items()
    )
    assert completed["governance"]["passed"] is True
    assert completed["governance"]["reconciliation"]["status"] == "COMPLETE"
    assert completed["reconciliation"]["status"] == "COMPLETE"
    assert {e["status"] for e in completed["expectations"]} == {"ACKED"}
    assert completed["updated_at"] == "2025-06-01T00:00:00Z"
    failure = next(r for r in exported if r["id"] == old_failure)
    assert (failure["phase"], failure["error"], failure["governance"]) == (
        "FAILED",
        "made to fail",
        None,
    )


def test_prune_counts_first_then_deletes_finished_runs_in_batches_while_the_service_answers(
    migrated_url: str, authority: Authority
) -> None:
    factory = RunFactory(authority)
    finished = [lifecycle(authority) for _ in range(3)] + [factory.at(RunPhase.FAILED)]
    live = [factory.at(RunPhase.CREATED), factory.at(RunPhase.EXECUTING)]
    recent = lifecycle(authority)
    age(migrated_url, [*finished, *live], LONG_AGO)
    kept = [*live, recent]
    before = rows_of(migrated_url, kept)
    prune = ["runs", "prune", "--finished-before", CUTOFF, "--url", migrated_url]

    with running_server(migrated_url, SERVER_ENV) as server, server.client() as client:
        dry = rok(*prune)
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.strip() == (
            "would delete 4 runs finished before 2026-01-01T00:00:00+00:00 (2 live runs kept); "
            "run again with --yes to delete"
        )
        assert rows_of(migrated_url, finished) > 0

        pruning = subprocess.Popen(
            [sys.executable, "-m", "service", *prune, "--batch-size", "3", "--yes"],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        answers = []
        while pruning.poll() is None:  # the service reads and writes meanwhile
            answers.append(client.get(f"/runs/{live[0]}").status_code)
            answers.append(client.post("/runs", json={"handler": "during-prune"}).status_code)
        out, err = pruning.communicate(timeout=60)

        assert pruning.returncode == 0, err
        assert out.startswith(
            "deleted 4 runs finished before 2026-01-01T00:00:00+00:00 in 2 batches ("
        )
        assert answers and set(answers) <= {200, 201}
        assert [client.get(f"/runs/{run_id}").status_code for run_id in finished] == [404] * 4
        assert [client.get(f"/runs/{run_id}").json()["phase"] for run_id in kept] == [
            "CREATED",
            "EXECUTING",
            "COMPLETED",
        ]
    assert rows_of(migrated_url, finished) == 0
    assert rows_of(migrated_url, kept) == before


@pytest.mark.parametrize("date", ["2026-13-01", "yesterday"])
def test_a_bad_date_is_refused_naming_the_format_and_nothing_is_deleted(
    tmp_path: Path, date: str
) -> None:
    url = sqlite_url(tmp_path)
    upgrade(url)
    with contextlib.closing(sealed_authority(url)) as authority:
        run_id = RunFactory(authority).at(RunPhase.FAILED)
    age(url, [run_id], LONG_AGO)

    exported = rok("runs", "export", "--finished-before", date, "--url", url)
    pruned = rok("runs", "prune", "--finished-before", date, "--yes", "--url", url)

    for done in (exported, pruned):
        assert done.returncode == 2
        assert f"'{date}' is not a date: write YYYY-MM-DD" in done.stderr
    assert rows_of(url, [run_id]) > 1


def test_the_walk_reads_every_finished_run_once_across_pages_and_batches(
    migrated_url: str, authority: Authority
) -> None:
    factory = RunFactory(authority)
    finished = [factory.at(RunPhase.FAILED) for _ in range(5)]
    live = factory.at(RunPhase.AUTHORIZED)
    age(migrated_url, [*finished, live], LONG_AGO)
    cutoff = datetime(2026, 1, 1, tzinfo=UTC)

    read = [r.id for r in retention.finished_records(authority.database, cutoff, page_size=2)]
    counted = retention.count_finished(authority.database, cutoff)
    batches = list(retention.prune_finished(authority.database, cutoff, batch_size=2))

    assert read == sorted(finished) and counted == 5
    assert batches == [2, 2, 1]
    assert retention.count_finished(authority.database, cutoff) == 0
    assert authority.store.exists(live) and retention.count_live(authority.database) == 1
    assert {(t.name, c.name) for t, c in retention.run_children()} >= {
        ("transitions", "run_id"),
        ("expectations", "run_id"),
        ("acks", "run_id"),
    }


def test_an_export_to_a_file_it_cannot_write_exits_2_naming_it(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    upgrade(url)
    out = tmp_path / "missing" / "runs.jsonl"

    done = rok_here("runs", "export", "--finished-before", CUTOFF, "--out", str(out), "--url", url)

    assert done.returncode == 2
    assert done.stderr == f"rok: cannot write {out}: No such file or directory\n"
