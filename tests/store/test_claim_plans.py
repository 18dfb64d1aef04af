"""What a claim reads at scale: every statement through its index, whatever the statistics.

The plans are read with statistics that see only finished runs (PostgreSQL
ANALYZEs a table of finished runs, as autovacuum would after a bulk of them;
the waiting runs come after), which is how a deployment with a long history
looks to the planner. The statements are the ones the claim really sends,
captured from a claim, with its parameters.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, insert, text

from service.authority import Authority
from service.store.tables import runs
from tests.support.authorities import open_authority
from tests.support.limits import claim, create_run

FINISHED = 500


@pytest.fixture
def finished(migrated_url: str) -> Iterator[Authority]:
    """Bare finished runs (no history: only plans are read from them), then ANALYZE on
    PostgreSQL: its statistics see no waiting run at all."""
    with contextlib.closing(open_authority(migrated_url)) as authority:
        now = authority.clock()
        rows = [
            {
                "id": str(uuid.uuid4()),
                "tenant_id": f"t{number % 7}",
                "handler": "h",
                "phase": "COMPLETED",
                "run_timeout_ms": 30_000,
                "available": False,
                "created_at": now,
                "updated_at": now,
            }
            for number in range(FINISHED)
        ]
        with authority.database.write() as conn:
            conn.execute(insert(runs), rows)
        if authority.database.is_postgres:
            with authority.database.engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
        yield authority


def claim_statements(authority: Authority) -> list[tuple[str, Any]]:
    """Every statement one claim sends, with its parameters, as the driver gets them."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    engine = authority.database.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        assert claim(authority) is not None
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return captured


def plan_of(authority: Authority, statement: str, parameters: Any) -> str:
    """The plan of `statement` (never run: EXPLAIN without ANALYZE)."""
    with authority.database.read() as conn:
        if authority.database.is_postgres:
            rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
            return " ".join(row[0] for row in rows)
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        return " ".join(row[3] for row in rows)


def test_the_lease_is_written_through_the_primary_key(finished: Authority) -> None:
    # `AND available` in this UPDATE let PostgreSQL, seeing no waiting run in its
    # statistics, read a whole partial index of waiting runs to find the id
    for _ in range(3):
        create_run(finished, tenant="t1", handler="h")
    leases = [
        (statement, parameters)
        for statement, parameters in claim_statements(finished)
        if statement.startswith("UPDATE runs")
    ]
    assert len(leases) == 1, leases
    plan = plan_of(finished, *leases[0])
    primary_key = "runs_pkey" if finished.database.is_postgres else "sqlite_autoindex_runs_1"
    assert primary_key in plan, plan
    assert "claimable" not in plan, plan


def test_a_fresh_run_is_claimed_without_reading_history_or_acks(finished: Authority) -> None:
    # it has neither: those two indexes grow with every run kept, a cold page each
    run_id = create_run(finished, tenant="t1", handler="h")
    statements = [s for s, _ in claim_statements(finished)]
    assert not [s for s in statements if "FROM transitions" in s or "FROM acks" in s]
    # the answer is the whole run all the same
    leased = finished.store.get(run_id)
    assert leased.row.lease is not None and leased.history == [] and leased.acks == []
    assert len(leased.expectations) == 5
    # and the claim read nothing of the run it leased but its contract (RETURNING)
    assert not [s for s in statements if s.startswith("SELECT runs.id, runs.tenant_id")]


def test_a_run_with_history_is_claimed_whole(finished: Authority) -> None:
    run_id = create_run(finished, tenant="t1", handler="h")
    got = claim(finished)
    assert got is not None
    kernel = finished.kernel(run_id, got[1])
    kernel.authorize("GRANTED", begin_execution=True)
    kernel.ack("incidents", "create_incident")
    kernel.release()  # claimable again, with its history and its ack
    again = finished.leases.claim("w2", 60_000, None, finished.clock())
    assert again is not None
    record, _ = again
    assert record == finished.store.get(run_id)
    assert [a.pair for a in record.acks] == [("incidents", "create_incident")]
    assert len(record.history) == 2  # authorized, executing
