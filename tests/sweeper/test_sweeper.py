"""The liveness sweeper, driven by tick(now) with the time passed in: no sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Select, event

from service.authority import Authority
from service.errors import LeaseLost
from service.kernel.kernel import create_rok
from service.model.audit import ReconciliationStatus
from service.model.phases import RunPhase
from service.store.sweeps import (
    expired_approvals_query,
    expired_leases_query,
    overdue_cancellations_query,
    passed_deadlines_query,
    unstarted_query,
)
from service.sweeper import Sweeper

LEASE_MS = 1000


def new_run(authority: Authority, max_attempts: int = 1, run_timeout_ms: int = 60_000) -> str:
    kernel = create_rok(
        store=authority.store,
        settings=authority.settings,
        handler="job",
        run_timeout_ms=run_timeout_ms,
        max_attempts=max_attempts,
    )
    kernel.declare_expectations()
    return kernel.run_id


def claim(authority: Authority, worker: str) -> tuple[str, str, datetime]:
    claimed = authority.leases.claim(worker, LEASE_MS, None, authority.clock())
    assert claimed is not None
    record, lease = claimed
    return record.id, lease.token, lease.expires_at


def test_expired_lease_fails_the_run_as_worker_lost(authority: Authority) -> None:
    new_run(authority)
    run_id, token, expires_at = claim(authority, "w1")
    authority.kernel(run_id, token).authorize("GRANTED")

    report = Sweeper(authority).tick(expires_at + timedelta(milliseconds=1))

    assert report.failed_worker_lost == [run_id]
    record = authority.store.get(run_id)
    assert record.phase is RunPhase.FAILED
    assert record.row.error is not None and "worker lost" in record.row.error
    assert record.history[-1].transition.reason is not None
    assert "worker lost" in record.history[-1].transition.reason
    assert record.row.lease is None
    # the presumed-dead worker's late call is fenced off
    with pytest.raises(LeaseLost):
        authority.kernel(run_id, token).begin_execution()


def test_live_lease_is_left_alone(authority: Authority) -> None:
    new_run(authority)
    run_id, _, expires_at = claim(authority, "w1")
    report = Sweeper(authority).tick(expires_at - timedelta(milliseconds=1))
    assert report.acted == 0
    assert authority.store.get(run_id).row.lease is not None


def test_expired_lease_with_attempts_left_is_released_and_continued(
    authority: Authority,
) -> None:
    new_run(authority, max_attempts=2)
    run_id, token, expires_at = claim(authority, "w1")
    first = authority.kernel(run_id, token)
    first.authorize("GRANTED")
    first.begin_execution()

    report = Sweeper(authority).tick(expires_at + timedelta(milliseconds=1))
    assert report.released == [run_id]
    released = authority.store.get(run_id)
    assert released.phase is RunPhase.EXECUTING  # never moves backwards
    assert released.row.attempt == 2
    started = released.history[-1]
    assert started.attempt == 2
    assert started.transition.from_phase is started.transition.to_phase is RunPhase.EXECUTING
    assert started.transition.reason is not None and "worker lost" in started.transition.reason

    again, token2, _ = claim(authority, "w2")
    assert again == run_id and token2 != token
    with pytest.raises(LeaseLost):
        first.execution_complete(True)
    second = authority.kernel(run_id, token2)
    second.execution_complete(True)
    assert authority.store.get(run_id).history[-1].attempt == 2


def test_last_attempt_lost_fails_the_run(authority: Authority) -> None:
    new_run(authority, max_attempts=2)
    sweeper = Sweeper(authority)
    _, _, expires_at = claim(authority, "w1")
    assert sweeper.tick(expires_at + timedelta(milliseconds=1)).released
    run_id, _, expires_at = claim(authority, "w2")
    report = sweeper.tick(expires_at + timedelta(milliseconds=1))
    assert report.failed_worker_lost == [run_id]
    assert authority.store.get(run_id).phase is RunPhase.FAILED


def test_passed_finalize_deadline_fails_the_run_as_stale_with_an_incident(
    authority: Authority,
) -> None:
    run_id = new_run(authority, run_timeout_ms=10)
    kernel = authority.kernel(run_id)
    kernel.authorize("GRANTED")
    record = authority.store.get(run_id)
    assert record.row.finalize_deadline is not None

    report = Sweeper(authority).tick(record.row.finalize_deadline + timedelta(milliseconds=1))

    assert report.failed_stale == [run_id]
    after = authority.store.get(run_id)
    assert after.phase is RunPhase.FAILED
    assert after.row.error is not None and after.row.error.startswith("stale")
    incidents = [a for a in after.acks if a.pair == ("incidents", "create_incident")]
    assert len(incidents) == 1 and incidents[0].result_id is not None
    finalize_acks = [a for a in after.acks if a.pair == ("orchestrator", "finalize_run")]
    assert len(finalize_acks) == 1
    result = after.reconciliation(record.row.finalize_deadline + timedelta(seconds=1))
    assert result.stale and result.status is ReconciliationStatus.STALE


def test_waiting_run_is_never_stale(authority: Authority) -> None:
    run_id = new_run(authority, run_timeout_ms=10)
    report = Sweeper(authority).tick(authority.clock() + timedelta(days=2))
    assert report.acted == 0
    assert authority.store.get(run_id).phase is RunPhase.CREATED


def test_terminal_runs_are_not_touched(authority: Authority) -> None:
    run_id = new_run(authority, run_timeout_ms=10)
    authority.kernel(run_id).fail("cancelled")
    before = authority.store.get(run_id)
    report = Sweeper(authority).tick(authority.clock() + timedelta(days=2))
    assert report.acted == 0
    assert authority.store.get(run_id) == before


def test_one_replica_sweeps_at_a_time(authority: Authority) -> None:
    if not authority.database.is_postgres:
        # one writer at a time anyway: every process sweeps, none is ever skipped
        assert not Sweeper(authority).tick(authority.clock()).skipped
        return
    from sqlalchemy import text

    from service.store.dialects import SWEEPER_LOCK_KEY

    new_run(authority, run_timeout_ms=10)
    with authority.database.engine.connect() as other_replica:
        held = other_replica.execute(
            text("SELECT pg_try_advisory_lock(:key, hashtext(current_schema()))"),
            {"key": SWEEPER_LOCK_KEY},
        ).scalar()
        assert held
        assert Sweeper(authority).tick(authority.clock()).skipped
        other_replica.execute(
            text("SELECT pg_advisory_unlock(:key, hashtext(current_schema()))"),
            {"key": SWEEPER_LOCK_KEY},
        )
    assert not Sweeper(authority).tick(authority.clock()).skipped


@pytest.mark.parametrize(
    ("query_for", "index"),
    [
        (expired_leases_query, "ix_runs_lease_expiry"),
        (passed_deadlines_query, "ix_runs_live_deadline"),
        (unstarted_query, "ix_runs_queue_deadline"),
        (expired_approvals_query, "ix_runs_approval_deadline"),
        (overdue_cancellations_query, "ix_runs_cancel_requested"),
    ],
)
def test_each_sweep_reads_only_its_partial_index(
    authority: Authority, query_for: Callable[[datetime], Select[Any]], index: str
) -> None:
    """Finished runs pile up; a tick must not scan them (it runs every second)."""
    database = authority.database
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    with database.read() as conn:
        # the statement and parameters the driver really gets: a plan from
        # literal values could use an index that the bound query cannot
        event.listen(conn, "before_cursor_execute", capture)
        conn.execute(query_for(authority.clock()))
        event.remove(conn, "before_cursor_execute", capture)
        statement, parameters = captured[0]
        if database.is_postgres:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # an empty table would seqscan
            rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
            plan = " ".join(row[0] for row in rows)
        else:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            plan = " ".join(row[3] for row in rows)
    assert index in plan, plan
