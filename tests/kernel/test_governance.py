"""governance_check on both backends: waiting for acks from another thread, timing out
with what is missing recorded, strict checks that fail the run, and a check ended by fail."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from service.authority import Authority
from service.errors import GovernanceCheckError, PhaseTransitionError
from service.model.audit import FINALIZE_RUN, ReconciliationStatus
from service.model.phases import RunPhase
from tests.support.invariants import finalize_run_acks
from tests.support.phases import OK, A, C, E, G, X, moves
from tests.support.runs import DOMAIN_PAIRS, RunFactory


def once_the_check_waits(
    authority: Authority, action: Callable[[], object]
) -> tuple[threading.Thread, list[BaseException]]:
    """Run `action` in another thread as soon as a governance check waits for acks."""
    errors: list[BaseException] = []

    def act_later() -> None:
        try:
            give_up = time.monotonic() + 30
            while authority.signals.waiting() == 0:  # the check has subscribed
                if time.monotonic() > give_up:
                    raise AssertionError("the governance check never started waiting")
                time.sleep(0.005)
            action()
        except BaseException as error:  # surfaced in the test thread
            errors.append(error)

    thread = threading.Thread(target=act_later)
    thread.start()
    return thread, errors


def ack_from_another_thread_once_the_check_waits(
    authority: Authority, run_id: str, pairs: list[tuple[str, str]]
) -> tuple[threading.Thread, list[BaseException]]:
    def ack_all() -> None:
        kernel = authority.kernel(run_id)
        for domain, action in pairs:
            kernel.ack(domain, action, result_id=f"{action}-1")

    return once_the_check_waits(authority, ack_all)


def test_governance_check_waits_for_acks_from_another_thread(
    authority: Authority, runs: RunFactory
) -> None:
    run_id = runs.at(G)
    thread, errors = ack_from_another_thread_once_the_check_waits(authority, run_id, DOMAIN_PAIRS)
    # a timeout far longer than the test: only the acks can end this wait with a pass
    outcome = runs.kernel(run_id).governance_check(timeout_ms=120_000)
    thread.join()
    assert errors == []
    assert outcome.passed is True
    assert outcome.reconciliation.missing == []
    assert outcome.reconciliation.pending == [FINALIZE_RUN]
    record = authority.store.get(run_id)
    assert record.phase is G
    assert record.row.governance_passed is True
    assert record.row.governance_checked_at is not None
    assert record.row.governance_reconciliation == outcome.reconciliation.to_dict()


def test_governance_check_async_waits_for_acks_from_another_thread(
    authority: Authority, runs: RunFactory
) -> None:
    run_id = runs.at(G)
    thread, errors = ack_from_another_thread_once_the_check_waits(authority, run_id, DOMAIN_PAIRS)
    kernel = runs.kernel(run_id)
    outcome = asyncio.run(kernel.governance_check_async(timeout_ms=120_000))
    thread.join()
    assert errors == []
    assert outcome.passed is True
    assert authority.store.get(run_id).row.governance_passed is True


def test_governance_check_times_out_with_the_missing_recorded(runs: RunFactory) -> None:
    run_id = runs.at(G)
    kernel = runs.kernel(run_id)
    kernel.ack("incidents", "create_incident", result_id=None)
    outcome = kernel.governance_check(timeout_ms=50)
    assert outcome.passed is False
    missing = [p for p in DOMAIN_PAIRS if p != ("incidents", "create_incident")]
    assert outcome.reconciliation.missing == missing
    assert FINALIZE_RUN not in outcome.reconciliation.missing
    assert outcome.reconciliation.stale is False
    record = kernel.load()
    assert record.phase is G  # not strict: the run is left for the caller to decide
    assert record.row.governance_passed is False
    assert record.row.governance_reconciliation is not None
    assert record.row.governance_reconciliation["missing"] == [list(p) for p in missing]
    assert kernel.reconciliation().missing == missing


def test_governance_check_uses_the_configured_timeout(runs: RunFactory) -> None:
    run_id = runs.at(G)
    outcome = runs.kernel(run_id).governance_check()  # 200 ms from Settings
    assert outcome.passed is False
    assert outcome.reconciliation.missing == DOMAIN_PAIRS


def test_governance_check_failed_ack_does_not_pass(runs: RunFactory) -> None:
    run_id = runs.at(G)
    runs.ack_all(run_id)
    kernel = runs.kernel(run_id)
    kernel.ack("policies", "evaluate_policy", error="policy engine down")
    outcome = kernel.governance_check(timeout_ms=0)
    assert outcome.passed is False
    assert outcome.reconciliation.failed == [("policies", "evaluate_policy")]


def test_governance_check_drift_is_reported_not_blocking(runs: RunFactory) -> None:
    run_id = runs.at(G)
    runs.ack_all(run_id)
    kernel = runs.kernel(run_id)
    kernel.ack("billing", "charge")
    outcome = kernel.governance_check(timeout_ms=0)
    assert outcome.passed is True
    assert outcome.reconciliation.drift == [("billing", "charge")]
    assert outcome.reconciliation.status is ReconciliationStatus.INCOMPLETE


def test_strict_governance_check_fails_the_run_listing_what_is_missing(
    runs: RunFactory,
) -> None:
    run_id = runs.at(G)
    kernel = runs.kernel(run_id)
    kernel.ack("logs", "start_trace")
    with pytest.raises(GovernanceCheckError) as raised:
        kernel.governance_check(timeout_ms=50, require_all_acks=True)
    outcome = raised.value.outcome
    assert raised.value.missing == [p for p in DOMAIN_PAIRS if p != ("logs", "start_trace")]
    assert outcome.passed is False
    missing = [p for p in DOMAIN_PAIRS if p != ("logs", "start_trace")]
    assert outcome.reconciliation.missing == missing
    record = kernel.load()
    assert record.phase is X
    assert moves(record)[-1] == (G, X)
    error = record.row.error or ""
    for domain, action in missing:
        assert f"{domain}/{action}" in error
    assert "logs/start_trace" not in error
    assert "finalize_run" not in error
    assert record.history[-1].transition.details == {
        "missing": [list(p) for p in missing],
        "failed": [],
    }
    assert finalize_run_acks(record) == 1
    assert record.row.governance_passed is False


def test_strict_governance_check_fails_the_run_on_a_failed_ack(runs: RunFactory) -> None:
    run_id = runs.at(G)
    kernel = runs.kernel(run_id)
    for domain, action in DOMAIN_PAIRS:
        error = "no trace backend" if action == "complete_trace" else None
        kernel.ack(domain, action, error=error)
    with pytest.raises(GovernanceCheckError) as raised:
        kernel.governance_check(timeout_ms=0, require_all_acks=True)
    outcome = raised.value.outcome
    assert raised.value.failed == [("logs", "complete_trace")]
    assert outcome.passed is False
    record = kernel.load()
    assert record.phase is X
    assert "failed logs/complete_trace" in (record.row.error or "")


def test_strict_governance_check_that_passes_leaves_the_run_in_check(runs: RunFactory) -> None:
    run_id = runs.at(G)
    runs.ack_all(run_id)
    outcome = runs.kernel(run_id).governance_check(timeout_ms=0, require_all_acks=True)
    assert outcome.passed is True
    assert runs.kernel(run_id).phase is G


@pytest.mark.parametrize("phase", [C, A, E, OK, X])
def test_governance_check_needs_the_check_phase(runs: RunFactory, phase: RunPhase) -> None:
    run_id = runs.at(phase)
    kernel = runs.kernel(run_id)
    before = kernel.load()
    with pytest.raises(PhaseTransitionError, match="GOVERNANCE_CHECK"):
        kernel.governance_check(timeout_ms=0)
    with pytest.raises(PhaseTransitionError, match="GOVERNANCE_CHECK"):
        kernel.record_governance_check()
    assert kernel.load() == before


def test_a_waiting_check_ends_when_the_run_is_failed_meanwhile(
    authority: Authority, runs: RunFactory
) -> None:
    run_id = runs.at(G)
    thread, errors = once_the_check_waits(
        authority, lambda: authority.kernel(run_id).fail("operator stop")
    )
    with pytest.raises(PhaseTransitionError) as caught:
        runs.kernel(run_id).governance_check(timeout_ms=120_000)
    thread.join()
    assert errors == []
    assert caught.value.current == X
    record = authority.store.get(run_id)
    assert record.phase is X
    assert record.row.governance_passed is None  # nothing recorded by the ended check
