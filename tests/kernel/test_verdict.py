"""The governance verdict is recorded once and never changes (DESIGN section 9), both backends.

A second check answers the recorded verdict and writes nothing; acks after
the verdict (or the end of the run) are kept, late, and drift in the live
reconciliation, never evidence that changes what was judged.
"""

from __future__ import annotations

from functools import partial

import pytest

from service.authority import Authority
from service.errors import GovernanceCheckError
from service.model.audit import FINALIZE_RUN, ReconciliationStatus
from service.model.phases import RunPhase
from tests.support.races import race
from tests.support.runs import DOMAIN_PAIRS, RunFactory

G = RunPhase.GOVERNANCE_CHECK
INCIDENT = ("incidents", "create_incident")
RACERS = 12


def checked_with_incident_missing(runs: RunFactory) -> str:
    run_id = runs.at(G)
    kernel = runs.kernel(run_id)
    for pair in DOMAIN_PAIRS:
        if pair != INCIDENT:
            kernel.ack(*pair)
    outcome = kernel.governance_check(timeout_ms=1)
    assert outcome.passed is False and outcome.reconciliation.missing == [INCIDENT]
    return run_id


def test_a_second_check_answers_the_recorded_verdict_and_writes_nothing(
    authority: Authority, runs: RunFactory
) -> None:
    run_id = checked_with_incident_missing(runs)
    kernel = runs.kernel(run_id)
    before = authority.store.get(run_id)
    # nothing is left to wait for once the verdict is recorded
    assert authority.store.governance_wait_state(run_id) == (G, [])

    again = kernel.governance_check(timeout_ms=60_000)

    after = authority.store.get(run_id)
    assert again.passed is False
    assert again.reconciliation.to_dict() == before.row.governance_reconciliation
    assert after.row == before.row  # same verdict, same checked_at, same updated_at
    assert after.history == before.history and after.acks == before.acks


def test_acks_after_the_verdict_are_late_drift_and_change_no_verdict(
    authority: Authority, runs: RunFactory
) -> None:
    run_id = checked_with_incident_missing(runs)
    kernel = runs.kernel(run_id)
    verdict = authority.store.get(run_id).row

    late = kernel.ack(*INCIDENT, result_id="inc-1")
    assert late.late is True

    record = authority.store.get(run_id)
    assert record.row.governance_passed is verdict.governance_passed
    assert record.row.governance_reconciliation == verdict.governance_reconciliation
    assert record.row.governance_checked_at == verdict.governance_checked_at
    live = kernel.reconciliation()
    assert INCIDENT in live.drift and INCIDENT in live.missing
    assert live.status is ReconciliationStatus.INCOMPLETE
    again = kernel.governance_check(timeout_ms=1)
    assert again.passed is False and again.reconciliation.missing == [INCIDENT]


def test_a_strict_check_acts_on_the_recorded_verdict(
    authority: Authority, runs: RunFactory
) -> None:
    run_id = checked_with_incident_missing(runs)
    kernel = runs.kernel(run_id)
    kernel.ack(*INCIDENT, result_id="inc-too-late")
    with pytest.raises(GovernanceCheckError) as failed:
        kernel.governance_check(timeout_ms=1, require_all_acks=True)
    assert failed.value.missing == [INCIDENT]
    record = authority.store.get(run_id)
    assert record.phase is RunPhase.FAILED
    assert record.row.governance_passed is False  # the verdict as first recorded


def test_acks_racing_the_end_of_an_unchecked_run_are_late_exactly_after_it(
    authority: Authority, runs: RunFactory
) -> None:
    """Without a verdict, the end of the run is what makes an ack late."""
    run_id = runs.at(RunPhase.EXECUTING)
    kernels = [authority.kernel(run_id) for _ in range(RACERS)]
    actions = [
        partial(kernels[i].fail, "racer")
        if i == RACERS // 2
        # the ack's result: (action, late) as the kernel answered it
        else partial(kernels[i].ack, "racers", f"action-{i}")
        for i in range(RACERS)
    ]
    outcomes = race(actions)
    assert all(kind == "ok" for kind, _ in outcomes), outcomes

    record = authority.store.get(run_id)
    assert record.phase is RunPhase.FAILED
    order = [(a.domain, a.action, a.late) for a in record.acks]  # commit order (ids)
    end = order.index((*FINALIZE_RUN, False))
    for position, (domain, _, late) in enumerate(order):
        if domain == "racers":
            assert late is (position > end), order
    answered = {v.action: v.late for kind, v in outcomes if kind == "ok" and hasattr(v, "late")}
    assert answered == {a: late for d, a, late in order if d == "racers"}
