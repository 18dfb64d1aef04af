"""What is stored is the run, on both backends: a kernel rebuilt from a new Authority sees
the same run, every history is valid, and keep_records holds each committed record."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.authority import Authority
from service.errors import GovernanceCheckError, PhaseTransitionError
from tests.support.authorities import open_authority
from tests.support.invariants import assert_run_valid
from tests.support.phases import NON_TERMINAL, OK, E, G, X
from tests.support.runs import RunFactory

# -- durability ----------------------------------------------------------------------


def test_a_kernel_rebuilt_from_a_new_authority_sees_the_same_run(
    authority: Authority, runs: RunFactory, migrated_url: str
) -> None:
    run_id = runs.create(input={"prompt": "hi", "n": [1, 2]}, tenant_id="t1", handler="h")
    kernel = runs.kernel(run_id)
    kernel.authorize("GRANTED")
    kernel.begin_execution()
    kernel.ack("incidents", "create_incident", result_id=None)
    kernel.ack("policies", "evaluate_policy", result_id="p-1", details={"rule": "r"})
    kernel.ack("logs", "start_trace", error="collector down")
    kernel.ack("billing", "charge")
    kernel.execution_complete(success=True)
    kernel.governance_check(timeout_ms=0)
    kernel.finalize(success=False, error="governance")
    kernel.ack("logs", "complete_trace")  # late
    live_id = runs.at(E)
    original = {r: authority.store.get(r) for r in (run_id, live_id)}

    other = open_authority(migrated_url)
    try:
        for rid, record in original.items():
            rebuilt = other.kernel(rid)
            assert rebuilt.load() == record
            assert rebuilt.phase is record.phase
            assert rebuilt.is_terminal is record.row.is_terminal
            assert rebuilt.reconciliation() == record.reconciliation(other.clock())
        # the rebuilt kernel carries on where the first one stopped
        assert other.kernel(live_id).execution_complete(success=True) is G
        assert authority.store.get(live_id).phase is G
    finally:
        other.close()

    stored = original[run_id]
    assert [a.late for a in stored.acks] == [False, False, False, False, False, True]
    assert stored.row.governance_reconciliation is not None


def test_every_persisted_history_is_valid(runs: RunFactory, authority: Authority) -> None:
    ids = [runs.at(p, checked=p is G) for p in [*NON_TERMINAL, OK, X]]
    for run_id in ids:
        assert_run_valid(authority.store.get(run_id))


# -- keep_records: the run as each move committed it --------------------------------


def test_a_kernel_keeping_records_holds_the_run_as_each_move_committed_it(
    authority: Authority, runs: RunFactory
) -> None:
    run_id = runs.create()
    kernel = authority.kernel(run_id, keep_records=True)
    assert kernel.last_record is None

    steps: list[Callable[[], object]] = [
        lambda: kernel.authorize("GRANTED"),
        kernel.begin_execution,
        lambda: kernel.execution_complete(success=True),
        lambda: runs.ack_all(run_id),
        kernel.governance_check,
        kernel.finalize,
    ]
    for step in steps:
        before = kernel.last_record
        step()
        if step is steps[3]:  # acks go through another kernel: nothing kept here
            assert kernel.last_record is before
            continue
        assert kernel.last_record == authority.store.get(run_id)


def test_a_refused_move_keeps_the_previous_record(authority: Authority, runs: RunFactory) -> None:
    run_id = runs.create()
    kernel = authority.kernel(run_id, keep_records=True)
    kernel.authorize("GRANTED")
    kept = kernel.last_record

    with pytest.raises(PhaseTransitionError):
        kernel.finalize()

    assert kernel.last_record is kept
    assert authority.store.get(run_id) == kept


def test_a_strict_check_that_fails_keeps_the_failed_run(
    authority: Authority, runs: RunFactory
) -> None:
    run_id = runs.at(G)
    kernel = authority.kernel(run_id, keep_records=True)

    with pytest.raises(GovernanceCheckError):
        kernel.governance_check(timeout_ms=1, require_all_acks=True)

    assert kernel.last_record is not None
    assert kernel.last_record.phase is X
    assert kernel.last_record == authority.store.get(run_id)
