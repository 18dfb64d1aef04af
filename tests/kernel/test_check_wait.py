"""What a governance check reads while it waits, on both backends: one indexed statement
per look, and no look at all before recording when the acks are in already."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from service.authority import Authority
from service.errors import RunNotFound
from service.kernel.governance import AckWait
from service.model.phases import RunPhase
from service.store.waits import wait_state
from tests.support.phases import G
from tests.support.runs import DOMAIN_PAIRS, RunFactory


@contextmanager
def statements_sent(authority: Authority) -> Iterator[list[tuple[str, Any]]]:
    """Every statement sent to the database in the block, with its parameters."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(authority.database.engine, "before_cursor_execute", capture)
    try:
        yield sent
    finally:
        event.remove(authority.database.engine, "before_cursor_execute", capture)


def is_wait_look(statement: str) -> bool:
    return "pending_expectations" in statement and statement.lstrip().startswith("SELECT")


def test_a_look_says_whether_the_run_still_owes_evidence(
    authority: Authority, runs: RunFactory
) -> None:
    run_id = runs.at(G)
    assert wait_state(authority.database, run_id).owes
    for domain, action in DOMAIN_PAIRS[:-1]:
        runs.kernel(run_id).ack(domain, action)
        assert wait_state(authority.database, run_id).owes
    runs.kernel(run_id).ack(*DOMAIN_PAIRS[-1])
    assert not wait_state(authority.database, run_id).owes


def test_a_look_after_the_verdict_finds_nothing_owed(
    runs: RunFactory, authority: Authority
) -> None:
    run_id = runs.at(G)
    runs.kernel(run_id).governance_check(timeout_ms=0)  # recorded with everything missing
    state = wait_state(authority.database, run_id)
    assert state.phase is G and not state.owes


def test_a_look_finds_no_run_of_another_tenant(runs: RunFactory, authority: Authority) -> None:
    run_id = runs.at(G, tenant_id="a")
    assert wait_state(authority.database, run_id, "a").owes
    with pytest.raises(RunNotFound):
        wait_state(authority.database, run_id, "b")
    with pytest.raises(RunNotFound):
        wait_state(authority.database, "no-such-run")


def test_a_look_reads_the_run_and_its_owed_rows_by_their_keys(
    runs: RunFactory, authority: Authority
) -> None:
    run_id = runs.at(G)
    with statements_sent(authority) as sent:
        wait_state(authority.database, run_id)
    [(statement, parameters)] = [s for s in sent if is_wait_look(s[0])]
    with authority.database.read() as conn:
        if authority.database.is_postgres:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # an empty table would seqscan
            rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
            plan = " ".join(row[0] for row in rows)
            assert "runs_pkey" in plan and "pk_pending_expectations" in plan, plan
        else:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            plan = " ".join(row[3] for row in rows)
            assert "sqlite_autoindex_runs_1" in plan, plan
            assert "sqlite_autoindex_pending_expectations_1" in plan, plan
    assert "SCAN" not in plan.replace("INDEX SCAN", "").replace("Index Scan", ""), plan


def test_a_check_whose_acks_are_in_records_without_a_look_first(
    authority: Authority, runs: RunFactory
) -> None:
    run_id = runs.at(G)
    runs.ack_all(run_id)
    with statements_sent(authority) as sent:
        outcome = asyncio.run(runs.kernel(run_id).governance_check_async(timeout_ms=60_000))
    assert outcome.passed is True
    assert not [s for s, _ in sent if is_wait_look(s)]
    assert authority.store.get(run_id).row.governance_passed is True


def test_a_first_look_that_must_wait_writes_nothing(authority: Authority, runs: RunFactory) -> None:
    run_id = runs.at(G)
    runs.kernel(run_id).ack(*DOMAIN_PAIRS[0])
    before = authority.store.get(run_id)
    kernel = runs.kernel(run_id)
    wait = AckWait(authority.store, run_id, timeout_s=60.0)
    # the first look is the recording transaction; it rolls back when something is owed
    assert wait._record_unless_waiting(kernel.record_governance_check) is None
    assert authority.store.get(run_id) == before
    # once the acks are in, a later look ends the wait and the check is recorded
    runs.ack_all(run_id)
    outcome = wait._record_if_over(kernel.record_governance_check)
    assert outcome is not None and outcome.passed is True
    assert authority.store.get(run_id).phase is RunPhase.GOVERNANCE_CHECK


def test_a_first_look_past_the_timeout_records_what_is_missing(
    authority: Authority, runs: RunFactory
) -> None:
    run_id = runs.at(G)
    kernel = runs.kernel(run_id)
    wait = AckWait(authority.store, run_id, timeout_s=0.0)
    outcome = wait._record_unless_waiting(kernel.record_governance_check)
    assert outcome is not None and outcome.passed is False
    assert outcome.reconciliation.missing == DOMAIN_PAIRS
