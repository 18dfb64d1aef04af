"""begin_finalization and finalize on both backends: the recorded check they need, checks
that finalize in their own transaction, and terminal runs that never change again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from service.errors import GovernanceCheckError, PhaseTransitionError
from service.kernel.kernel import RunOrchestrationKernel
from service.model.audit import FINALIZE_RUN, ReconciliationStatus
from service.model.phases import TERMINAL_PHASES, RunPhase
from tests.support.invariants import finalize_run_acks
from tests.support.phases import OK, A, C, E, G, X, Z, moves
from tests.support.runs import DOMAIN_PAIRS, RunFactory


def test_begin_finalization_needs_a_recorded_check(runs: RunFactory) -> None:
    run_id = runs.at(G)
    kernel = runs.kernel(run_id)
    before = kernel.load()
    with pytest.raises(PhaseTransitionError, match="no governance check was recorded"):
        kernel.begin_finalization()
    assert kernel.load() == before
    runs.ack_all(run_id)
    kernel.governance_check()
    assert kernel.begin_finalization() is Z
    assert moves(kernel.load())[-1] == (G, Z)


def test_finalize_success_needs_a_recorded_check(runs: RunFactory) -> None:
    run_id = runs.at(G)
    runs.ack_all(run_id)
    kernel = runs.kernel(run_id)
    before = kernel.load()
    with pytest.raises(PhaseTransitionError) as caught:
        kernel.finalize(success=True)
    assert (caught.value.current, caught.value.requested) == (G, OK)
    assert "no governance check was recorded" in str(caught.value)
    assert kernel.load() == before


def test_finalize_from_check_passes_through_finalizing(runs: RunFactory) -> None:
    run_id = runs.at(G, checked=True)
    kernel = runs.kernel(run_id)
    assert kernel.finalize() is OK
    record = kernel.load()
    assert moves(record) == [(C, A), (A, E), (E, G), (G, Z), (Z, OK)]
    assert finalize_run_acks(record) == 1
    final = next(a for a in record.acks if a.pair == FINALIZE_RUN)
    assert final.result_id == "COMPLETED"
    assert final.error is None
    assert record.row.error is None
    reconciliation = kernel.reconciliation()
    assert reconciliation.status is ReconciliationStatus.COMPLETE
    assert reconciliation.missing == reconciliation.pending == []


def test_a_check_that_finalizes_completes_a_successful_run_in_its_transaction(
    runs: RunFactory,
) -> None:
    run_id = runs.at(G)
    runs.ack_all(run_id)
    kernel = runs.kernel(run_id)
    outcome = kernel.governance_check(timeout_ms=0, require_all_acks=True, finalize=True)
    assert outcome.passed is True
    record = kernel.load()
    assert moves(record)[-3:] == [(E, G), (G, Z), (Z, OK)]
    # the check is recorded before the end, at the same instant
    assert record.row.governance_passed is True
    assert record.row.governance_checked_at == record.history[-1].transition.at
    assert finalize_run_acks(record) == 1
    assert kernel.reconciliation().status is ReconciliationStatus.COMPLETE


def test_a_check_that_finalizes_a_failed_execution_fails_the_run_with_its_error(
    runs: RunFactory,
) -> None:
    run_id = runs.at(E)
    kernel = runs.kernel(run_id)
    kernel.execution_complete(success=False, error="tool raised")
    runs.ack_all(run_id)
    assert kernel.governance_check(timeout_ms=0, finalize=True).passed is True
    record = kernel.load()
    assert moves(record)[-2:] == [(G, Z), (Z, X)]
    assert record.row.error == "tool raised"
    assert finalize_run_acks(record) == 1


def test_a_lenient_check_that_finalizes_completes_with_what_is_missing_recorded(
    runs: RunFactory,
) -> None:
    # what a worker's own finalize after a lenient check did: the outcome decides
    run_id = runs.at(G)
    kernel = runs.kernel(run_id)
    outcome = kernel.governance_check(timeout_ms=0, finalize=True)
    assert outcome.passed is False
    record = kernel.load()
    assert record.row.phase is OK
    assert record.row.governance_passed is False
    assert kernel.reconciliation().missing == DOMAIN_PAIRS


def test_a_strict_check_that_fails_does_not_finalize_twice(runs: RunFactory) -> None:
    run_id = runs.at(G)
    kernel = runs.kernel(run_id)
    with pytest.raises(GovernanceCheckError):
        kernel.governance_check(timeout_ms=0, require_all_acks=True, finalize=True)
    record = kernel.load()
    assert moves(record)[-1] == (G, X)
    assert finalize_run_acks(record) == 1


def test_a_check_that_finalizes_refuses_a_run_already_ended(runs: RunFactory) -> None:
    run_id = runs.at(OK)
    kernel = runs.kernel(run_id)
    before = kernel.load()
    with pytest.raises(PhaseTransitionError):
        kernel.governance_check(timeout_ms=0, finalize=True)
    assert kernel.load() == before


def test_finalize_from_finalizing(runs: RunFactory) -> None:
    run_id = runs.at(Z)
    kernel = runs.kernel(run_id)
    assert kernel.finalize() is OK
    record = kernel.load()
    assert moves(record)[-2:] == [(G, Z), (Z, OK)]
    assert finalize_run_acks(record) == 1


def test_finalize_as_failed_needs_no_check(runs: RunFactory) -> None:
    run_id = runs.at(G)
    kernel = runs.kernel(run_id)
    assert kernel.finalize(success=False, error="gave up") is X
    record = kernel.load()
    assert moves(record)[-1] == (G, X)
    assert record.row.error == "gave up"
    assert finalize_run_acks(record) == 1
    assert next(a for a in record.acks if a.pair == FINALIZE_RUN).result_id == "FAILED"


def test_finalize_after_a_failed_execution_must_say_failed(runs: RunFactory) -> None:
    run_id = runs.at(E)
    kernel = runs.kernel(run_id)
    kernel.execution_complete(success=False, error="oom")
    runs.ack_all(run_id)
    kernel.governance_check()
    before = kernel.load()
    with pytest.raises(PhaseTransitionError, match="execution failed"):
        kernel.finalize(success=True)
    assert kernel.load() == before
    assert kernel.finalize(success=False) is X
    record = kernel.load()
    assert moves(record)[-2:] == [(G, Z), (Z, X)]
    assert record.row.error == "oom"


@pytest.mark.parametrize("phase", [C, A, E])
def test_finalize_before_governance_is_refused(runs: RunFactory, phase: RunPhase) -> None:
    run_id = runs.at(phase)
    kernel = runs.kernel(run_id)
    before = kernel.load()
    for success in (True, False):
        with pytest.raises(PhaseTransitionError, match="use fail"):
            kernel.finalize(success=success)
    assert kernel.load() == before


TERMINATE: dict[str, Callable[[RunOrchestrationKernel], Any]] = {
    "finalize": lambda k: k.finalize(),
    "finalize_failed": lambda k: k.finalize(success=False, error="late"),
    "fail": lambda k: k.fail("operator"),
    "authorize": lambda k: k.authorize("GRANTED"),
    "begin_execution": lambda k: k.begin_execution(),
    "execution_complete": lambda k: k.execution_complete(success=True),
    "governance_check": lambda k: k.governance_check(timeout_ms=0),
    "begin_finalization": lambda k: k.begin_finalization(),
}


@pytest.mark.parametrize("second", sorted(TERMINATE))
@pytest.mark.parametrize("first", ["finalize", "fail"])
def test_a_terminal_run_never_changes_again(runs: RunFactory, first: str, second: str) -> None:
    run_id = runs.at(G, checked=True)
    kernel = runs.kernel(run_id)
    TERMINATE[first](kernel)
    before = kernel.load()
    assert before.phase in TERMINAL_PHASES
    with pytest.raises(PhaseTransitionError) as caught:
        TERMINATE[second](kernel)
    assert caught.value.current == before.phase
    assert kernel.load() == before
    assert finalize_run_acks(before) == 1
