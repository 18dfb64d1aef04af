"""rok_runs_by_phase reads live runs through an index: its cost is the live runs,
never the finished ones a deployment keeps (service.api.observability.phase_counts)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from service.api.observability.phase_counts import live_phase_counts, live_phase_counts_query
from service.authority import Authority
from service.model.phases import RunPhase
from tests.support.runs import RunFactory


def test_the_phase_counts_read_ix_runs_phase_created_only(authority: Authority) -> None:
    database = authority.database
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    with database.read() as conn:
        # the statement and parameters the driver really gets
        event.listen(conn, "before_cursor_execute", capture)
        conn.execute(live_phase_counts_query())
        event.remove(conn, "before_cursor_execute", capture)
        statement, parameters = captured[0]
        if database.is_postgres:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # an empty table would seqscan
            rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
            plan = " ".join(row[0] for row in rows)
            assert "Seq Scan" not in plan, plan
        else:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            plan = " ".join(row[3] for row in rows)
            # a covering index search on phase IN (...): no table row is read
            assert "COVERING INDEX ix_runs_phase_created (phase=?)" in plan, plan
    assert "ix_runs_phase_created" in plan, plan


def test_finished_runs_are_not_counted_and_every_live_phase_is(authority: Authority) -> None:
    runs = RunFactory(authority)
    runs.at(RunPhase.EXECUTING)
    runs.at(RunPhase.COMPLETED)
    runs.at(RunPhase.FAILED)

    with authority.database.read() as conn:
        counts = live_phase_counts(conn)

    assert counts == {
        RunPhase.CREATED: 0,
        RunPhase.AUTHORIZED: 0,
        RunPhase.EXECUTING: 1,
        RunPhase.GOVERNANCE_CHECK: 0,
        RunPhase.FINALIZING: 0,
    }
