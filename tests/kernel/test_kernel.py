"""The kernel against a real database (SQLite and PostgreSQL): every lifecycle method,
the audit clock, RAC off, late acks, durability and lease fencing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from service.authority import Authority
from service.errors import (
    GovernanceCheckError,
    InvalidRequest,
    LeaseLost,
    PhaseTransitionError,
    RunAlreadyExists,
    RunNotFound,
)
from service.kernel.kernel import MAX_ACK_BATCH, AckSpec, RunOrchestrationKernel, create_rok
from service.model.audit import (
    DEFAULT_DOMAIN_EXPECTATIONS,
    FINALIZE_RUN,
    ReconciliationStatus,
)
from service.model.phases import TERMINAL_PHASES, RunPhase
from service.store.records import RunRecord
from service.store.tables import runs as runs_table
from tests.kernel.conftest import RunFactory, open_authority
from tests.kernel.invariants import assert_run_valid, finalize_run_acks

C = RunPhase.CREATED
A = RunPhase.AUTHORIZED
E = RunPhase.EXECUTING
G = RunPhase.GOVERNANCE_CHECK
Z = RunPhase.FINALIZING
OK = RunPhase.COMPLETED
X = RunPhase.FAILED

NON_TERMINAL = [C, A, E, G, Z]
DOMAIN_PAIRS = sorted(DEFAULT_DOMAIN_EXPECTATIONS)


def moves(record: RunRecord) -> list[tuple[RunPhase, RunPhase]]:
    return [(h.transition.from_phase, h.transition.to_phase) for h in record.history]


# -- T0: declare_expectations ------------------------------------------------------


def test_declare_writes_the_default_contract_with_no_deadlines(authority: Authority) -> None:
    kernel = create_rok(
        store=authority.store, settings=authority.settings, run_timeout_ms=1_000, input={"q": 1}
    )
    assert kernel.declare_expectations() is True
    record = kernel.load()
    assert record.phase is C
    assert record.history == []
    assert record.acks == []
    assert record.row.input == {"q": 1}
    assert [(e.domain, e.action) for e in record.expectations] == [
        *DEFAULT_DOMAIN_EXPECTATIONS,
        FINALIZE_RUN,
    ]
    grace = authority.settings.grace_period_ms
    assert {e.deadline_ms for e in record.expectations} == {1_000 + grace}
    assert all(e.deadline is None for e in record.expectations)
    assert kernel.phase is C
    assert kernel.is_terminal is False


def test_declare_is_idempotent(authority: Authority) -> None:
    kernel = create_rok("run-idem", store=authority.store, settings=authority.settings)
    assert kernel.declare_expectations() is True
    before = kernel.load()
    assert kernel.declare_expectations() is False
    assert kernel.declare_expectations() is False
    assert kernel.load() == before


def test_declare_with_the_same_idempotency_key_returns_the_existing_run(
    authority: Authority,
) -> None:
    first = create_rok(store=authority.store, settings=authority.settings, idempotency_key="k1")
    assert first.declare_expectations() is True
    again = create_rok(store=authority.store, settings=authority.settings, idempotency_key="k1")
    assert again.declare_expectations() is False
    assert again.run_id == first.run_id
    assert len(again.load().expectations) == 5


def test_declare_of_an_existing_run_id_raises(authority: Authority) -> None:
    create_rok("run-dup", store=authority.store, settings=authority.settings).declare_expectations()
    other = create_rok("run-dup", store=authority.store, settings=authority.settings, handler="h")
    with pytest.raises(RunAlreadyExists, match="run-dup"):
        other.declare_expectations()


def test_declare_a_custom_contract(authority: Authority) -> None:
    run_id = RunFactory(authority).create(
        run_timeout_ms=2_000, expectations=[("billing", "charge", 50), ("audit", "log", None)]
    )
    record = authority.store.get(run_id)
    grace = authority.settings.grace_period_ms
    assert [(e.domain, e.action, e.deadline_ms) for e in record.expectations] == [
        ("billing", "charge", 50),
        ("audit", "log", 2_000 + grace),
        (*FINALIZE_RUN, 2_000 + grace),
    ]


def test_declare_an_empty_contract_leaves_finalize_run(authority: Authority) -> None:
    run_id = RunFactory(authority).create(expectations=[])
    assert [e.pair for e in authority.store.get(run_id).expectations] == [FINALIZE_RUN]


# -- authorize ----------------------------------------------------------------------


def test_authorize_granted(runs: RunFactory) -> None:
    run_id = runs.create()
    kernel = runs.kernel(run_id)
    assert kernel.authorize("GRANTED", reason="policy ok") is A
    record = kernel.load()
    assert moves(record) == [(C, A)]
    entry = record.history[0].transition
    assert entry.reason == "policy ok"
    assert entry.details == {"decision": "GRANTED"}
    assert record.acks == []
    assert record.row.error is None


@pytest.mark.parametrize("decision", ["DENIED", "granted", ""])
def test_authorize_denied_fails_the_run_with_the_decision_recorded(
    runs: RunFactory, decision: str
) -> None:
    run_id = runs.create()
    kernel = runs.kernel(run_id)
    assert kernel.authorize(decision, reason="over budget") is X
    record = kernel.load()
    assert moves(record) == [(C, X)]
    assert record.history[0].transition.details == {"decision": decision}
    assert record.row.error is not None
    assert f"denied: {decision}" in record.row.error
    assert "over budget" in record.row.error
    assert finalize_run_acks(record) == 1
    assert record.row.clock_started_at == record.history[0].transition.at
    assert kernel.is_terminal


def test_authorize_and_begin_execution_in_one_move(runs: RunFactory) -> None:
    run_id = runs.create()
    kernel = runs.kernel(run_id)
    assert kernel.authorize("GRANTED", begin_execution=True) is E
    record = kernel.load()
    # both moves are in the history, one transaction, one time
    assert moves(record) == [(C, A), (A, E)]
    assert record.history[0].transition.at == record.history[1].transition.at
    assert record.row.clock_started_at == record.history[0].transition.at


def test_a_denial_does_not_begin_execution(runs: RunFactory) -> None:
    run_id = runs.create()
    kernel = runs.kernel(run_id)
    assert kernel.authorize("DENIED", begin_execution=True) is X
    assert moves(kernel.load()) == [(C, X)]


def test_authorize_twice_is_refused(runs: RunFactory) -> None:
    run_id = runs.at(A)
    kernel = runs.kernel(run_id)
    before = kernel.load()
    with pytest.raises(PhaseTransitionError, match="AUTHORIZED"):
        kernel.authorize("GRANTED")
    assert kernel.load() == before


# -- begin_execution, execution_complete ----------------------------------------------


def test_begin_execution(runs: RunFactory) -> None:
    run_id = runs.at(A)
    kernel = runs.kernel(run_id)
    assert kernel.begin_execution() is E
    assert moves(kernel.load())[-1] == (A, E)


def test_begin_execution_needs_authorization(runs: RunFactory) -> None:
    run_id = runs.create()
    kernel = runs.kernel(run_id)
    with pytest.raises(PhaseTransitionError) as caught:
        kernel.begin_execution()
    assert (caught.value.current, caught.value.requested) == (C, E)
    assert kernel.load().history == []


def test_execution_complete_success(runs: RunFactory) -> None:
    run_id = runs.at(E)
    kernel = runs.kernel(run_id)
    assert kernel.execution_complete(success=True) is G
    record = kernel.load()
    assert moves(record)[-1] == (E, G)
    assert record.history[-1].transition.details == {"success": True}
    assert record.row.execution_success is True
    assert record.row.error is None
    assert record.row.governance_passed is None


def test_execution_complete_failure_still_goes_through_governance(runs: RunFactory) -> None:
    run_id = runs.at(E)
    kernel = runs.kernel(run_id)
    assert kernel.execution_complete(success=False, error="disk full") is G
    record = kernel.load()
    assert moves(record)[-1] == (E, G)
    assert record.row.execution_success is False
    assert record.row.error == "disk full"
    assert "disk full" in (record.history[-1].transition.reason or "")


def test_execution_complete_needs_executing(runs: RunFactory) -> None:
    run_id = runs.at(A)
    with pytest.raises(PhaseTransitionError):
        runs.kernel(run_id).execution_complete(success=True)


# -- governance_check -------------------------------------------------------------------


def ack_from_another_thread_once_the_check_waits(
    authority: Authority, run_id: str, pairs: list[tuple[str, str]]
) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def ack_later() -> None:
        try:
            give_up = time.monotonic() + 30
            while authority.signals.waiting() == 0:  # the check has subscribed
                if time.monotonic() > give_up:
                    raise AssertionError("the governance check never started waiting")
                time.sleep(0.005)
            kernel = authority.kernel(run_id)
            for domain, action in pairs:
                kernel.ack(domain, action, result_id=f"{action}-1")
        except BaseException as error:  # surfaced in the test thread
            errors.append(error)

    thread = threading.Thread(target=ack_later)
    thread.start()
    return thread, errors


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


# -- begin_finalization, finalize --------------------------------------------------------


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


# -- fail ------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", NON_TERMINAL)
def test_fail_from_every_non_terminal_phase(runs: RunFactory, phase: RunPhase) -> None:
    run_id = runs.at(phase, checked=phase is G)
    kernel = runs.kernel(run_id)
    before = kernel.load()
    assert kernel.fail("operator stop") is X
    record = kernel.load()
    assert record.history[: len(before.history)] == before.history
    assert moves(record)[len(before.history) :] == [(phase, X)]
    assert record.row.error == "operator stop"
    assert "operator stop" in (record.history[-1].transition.reason or "")
    assert finalize_run_acks(record) == 1
    assert record.row.clock_started_at is not None
    assert all(e.deadline is not None for e in record.expectations)
    reconciliation = kernel.reconciliation()
    assert reconciliation.stale is False
    assert FINALIZE_RUN not in reconciliation.missing


# -- the audit clock ------------------------------------------------------------------


@pytest.mark.parametrize("leave", ["authorize", "deny", "fail"])
def test_audit_clock_starts_when_the_run_leaves_created(runs: RunFactory, leave: str) -> None:
    run_id = runs.create(run_timeout_ms=3_000, expectations=[("billing", "charge", 700)])
    kernel = runs.kernel(run_id)
    waiting = kernel.load()
    assert waiting.row.clock_started_at is None
    assert waiting.row.finalize_deadline is None
    assert [e.deadline for e in waiting.expectations] == [None, None]

    if leave == "authorize":
        kernel.authorize("GRANTED")
    elif leave == "deny":
        kernel.authorize("DENIED")
    else:
        kernel.fail("cancelled")
    record = kernel.load()
    started = record.history[0].transition.at
    assert record.row.clock_started_at == started
    grace = runs.authority.settings.grace_period_ms
    deadlines = {e.pair: e.deadline for e in record.expectations}
    assert deadlines == {
        ("billing", "charge"): started + timedelta(milliseconds=700),
        FINALIZE_RUN: started + timedelta(milliseconds=3_000 + grace),
    }
    assert record.row.finalize_deadline == deadlines[FINALIZE_RUN]


def test_audit_clock_does_not_restart_on_later_moves(runs: RunFactory) -> None:
    run_id = runs.at(A)
    started = runs.kernel(run_id).load().row.clock_started_at
    kernel = runs.kernel(run_id)
    kernel.begin_execution()
    kernel.execution_complete(success=True)
    kernel.fail("x")
    assert kernel.load().row.clock_started_at == started


# -- RAC disabled -----------------------------------------------------------------------


def test_rac_disabled_has_no_contract_and_passes_governance(rac_off_runs: RunFactory) -> None:
    run_id = rac_off_runs.at(G)
    kernel = rac_off_runs.kernel(run_id)
    record = kernel.load()
    assert record.expectations == []
    assert record.row.finalize_deadline is None
    # nothing is outstanding: a long timeout must not be waited out
    outcome = kernel.governance_check(timeout_ms=120_000)
    assert outcome.passed is True
    assert outcome.reconciliation.status is ReconciliationStatus.COMPLETE
    assert kernel.finalize() is OK
    record = kernel.load()
    assert record.acks == []
    assert moves(record)[-2:] == [(G, Z), (Z, OK)]


def test_rac_disabled_fail_writes_no_finalize_run_ack(rac_off_runs: RunFactory) -> None:
    run_id = rac_off_runs.at(E)
    kernel = rac_off_runs.kernel(run_id)
    kernel.fail("stop")
    assert kernel.load().acks == []


def test_rac_disabled_ignores_a_declared_contract(rac_off_runs: RunFactory) -> None:
    run_id = rac_off_runs.create(expectations=[("billing", "charge", 10)])
    assert rac_off_runs.kernel(run_id).load().expectations == []


# -- acks ----------------------------------------------------------------------------


def test_ack_is_recorded_as_given(runs: RunFactory) -> None:
    run_id = runs.at(E)
    kernel = runs.kernel(run_id)
    returned = kernel.ack(
        "incidents", "create_incident", result_id="inc-1", details={"severity": "low"}
    )
    assert returned.late is False
    record = kernel.load()
    assert record.acks == [returned]
    assert record.acks[0].details == {"severity": "low"}


@pytest.mark.parametrize("action", ["finalize_run", "anything"])
def test_ack_on_the_orchestrator_domain_is_refused(runs: RunFactory, action: str) -> None:
    run_id = runs.at(G)
    kernel = runs.kernel(run_id)
    with pytest.raises(InvalidRequest, match="orchestrator"):
        kernel.ack("orchestrator", action)
    assert kernel.load().acks == []


def test_ack_on_an_unknown_run(authority: Authority) -> None:
    with pytest.raises(RunNotFound):
        authority.kernel("no-such-run").ack("incidents", "create_incident")
    with pytest.raises(RunNotFound):
        _ = authority.kernel("no-such-run").phase


@pytest.mark.parametrize("terminal", [OK, X])
def test_ack_on_a_terminal_run_is_kept_as_drift(runs: RunFactory, terminal: RunPhase) -> None:
    run_id = runs.at(terminal)
    kernel = runs.kernel(run_id)
    before = kernel.load()
    late = kernel.ack("incidents", "create_incident", result_id="inc-late")
    assert late.late is True
    after = kernel.load()
    assert after.acks == [*before.acks, late]
    assert after.row == before.row
    assert after.history == before.history
    assert after.expectations == before.expectations
    reconciliation = kernel.reconciliation()
    assert ("incidents", "create_incident") in reconciliation.drift
    assert reconciliation.status is not ReconciliationStatus.COMPLETE
    if terminal is X:
        # a late ack is not evidence: the failed run still misses it
        assert ("incidents", "create_incident") in reconciliation.missing


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


# -- lease fencing -------------------------------------------------------------------

TOKEN = "a" * 32


def set_lease(authority: Authority, run_id: str, expires_in: timedelta) -> None:
    with authority.database.write() as conn:
        conn.execute(
            update(runs_table)
            .where(runs_table.c.id == run_id)
            .values(
                lease_worker_id="worker-1",
                lease_token=TOKEN,
                lease_expires_at=authority.clock() + expires_in,
                available=False,
            )
        )


LEASED_MOVES: dict[str, tuple[RunPhase, bool, Callable[[RunOrchestrationKernel], Any]]] = {
    "authorize": (C, False, lambda k: k.authorize("GRANTED")),
    "deny": (C, False, lambda k: k.authorize("DENIED")),
    "begin_execution": (A, False, lambda k: k.begin_execution()),
    "execution_complete": (E, False, lambda k: k.execution_complete(success=True)),
    "governance_check": (G, False, lambda k: k.governance_check(timeout_ms=0)),
    "begin_finalization": (G, True, lambda k: k.begin_finalization()),
    "finalize": (Z, True, lambda k: k.finalize()),
}


@pytest.mark.parametrize("move", sorted(LEASED_MOVES))
def test_lifecycle_moves_on_a_leased_run_need_its_live_token(
    authority: Authority, runs: RunFactory, move: str
) -> None:
    phase, checked, act = LEASED_MOVES[move]
    run_id = runs.at(phase, checked=checked)
    set_lease(authority, run_id, timedelta(hours=1))
    before = authority.store.get(run_id)

    for token, why in [(None, "send its X-Lease-Token"), ("b" * 32, "not the run's current")]:
        with pytest.raises(LeaseLost, match=why):
            act(runs.kernel(run_id, token))
        assert authority.store.get(run_id) == before

    act(runs.kernel(run_id, TOKEN))
    assert authority.store.get(run_id) != before


@pytest.mark.parametrize("move", sorted(LEASED_MOVES))
def test_an_expired_lease_fences_lifecycle_moves(
    authority: Authority, runs: RunFactory, move: str
) -> None:
    phase, checked, act = LEASED_MOVES[move]
    run_id = runs.at(phase, checked=checked)
    set_lease(authority, run_id, -timedelta(seconds=1))
    before = authority.store.get(run_id)
    with pytest.raises(LeaseLost, match="expired"):
        act(runs.kernel(run_id, TOKEN))
    assert authority.store.get(run_id) == before


def test_a_token_for_an_unleased_run_is_stale(runs: RunFactory) -> None:
    run_id = runs.create()
    kernel = runs.kernel(run_id, TOKEN)
    with pytest.raises(LeaseLost, match="holds no lease"):
        kernel.authorize("GRANTED")
    assert kernel.phase is C


def test_fail_without_a_token_is_the_operator_override(
    authority: Authority, runs: RunFactory
) -> None:
    run_id = runs.at(E)
    set_lease(authority, run_id, timedelta(hours=1))
    assert runs.kernel(run_id).fail("operator stop") is X
    record = authority.store.get(run_id)
    assert record.row.lease is None
    assert record.row.error == "operator stop"


def test_fail_with_a_wrong_token_is_refused(authority: Authority, runs: RunFactory) -> None:
    run_id = runs.at(E)
    set_lease(authority, run_id, timedelta(hours=1))
    before = authority.store.get(run_id)
    with pytest.raises(LeaseLost):
        runs.kernel(run_id, "b" * 32).fail("stale worker")
    assert authority.store.get(run_id) == before
    assert runs.kernel(run_id, TOKEN).fail("holder gives up") is X


def test_acks_on_a_leased_run_need_no_token(authority: Authority, runs: RunFactory) -> None:
    run_id = runs.at(E)
    set_lease(authority, run_id, timedelta(hours=1))
    assert runs.kernel(run_id).ack("incidents", "create_incident").late is False


def test_finalize_clears_the_lease(authority: Authority, runs: RunFactory) -> None:
    run_id = runs.at(G, checked=True)
    set_lease(authority, run_id, timedelta(hours=1))
    assert runs.kernel(run_id, TOKEN).finalize() is OK
    assert authority.store.get(run_id).row.lease is None


def test_a_waiting_check_ends_when_the_run_is_failed_meanwhile(
    authority: Authority, runs: RunFactory
) -> None:
    run_id = runs.at(G)
    errors: list[BaseException] = []

    def fail_once_waiting() -> None:
        try:
            give_up = time.monotonic() + 30
            while authority.signals.waiting() == 0:
                if time.monotonic() > give_up:
                    raise AssertionError("the governance check never started waiting")
                time.sleep(0.005)
            authority.kernel(run_id).fail("operator stop")
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=fail_once_waiting)
    thread.start()
    with pytest.raises(PhaseTransitionError) as caught:
        runs.kernel(run_id).governance_check(timeout_ms=120_000)
    thread.join()
    assert errors == []
    assert caught.value.current == X
    record = authority.store.get(run_id)
    assert record.phase is X
    assert record.row.governance_passed is None  # nothing recorded by the ended check


# -- ROK_ENABLED=false: the ungoverned outcome ---------------------------------------


@pytest.mark.parametrize("success", [True, False])
@pytest.mark.parametrize("phase", NON_TERMINAL)
def test_ungoverned_outcome_walks_a_legal_path(
    runs: RunFactory, phase: RunPhase, success: bool
) -> None:
    run_id = runs.at(phase)
    kernel = runs.kernel(run_id)
    before = kernel.load()
    assert kernel.record_ungoverned_outcome(success, None if success else "boom") is (
        OK if success else X
    )
    record = kernel.load()
    assert_run_valid(record)
    assert record.history[: len(before.history)] == before.history
    # no governance check is recorded on the way (only the factory's, for FINALIZING)
    assert record.row.governance_passed is before.row.governance_passed
    assert record.row.clock_started_at is not None
    if not success:
        assert record.row.error == "boom"
    with pytest.raises(PhaseTransitionError):
        kernel.record_ungoverned_outcome(True)


# -- a contract outlives a change of RAC_ENABLED ---------------------------------------


def test_a_run_declared_with_rac_on_gets_its_finalize_run_ack_after_rac_is_turned_off(
    migrated_url: str,
) -> None:
    declaring = open_authority(migrated_url)
    try:
        run_id = RunFactory(declaring).at(E)
    finally:
        declaring.close()
    restarted = open_authority(migrated_url, rac_enabled=False)
    try:
        restarted.kernel(run_id).fail("stopped after the restart")
        record = restarted.store.get(run_id)
    finally:
        restarted.close()
    assert FINALIZE_RUN in [e.pair for e in record.expectations]
    # invariant 2: the declared contract is what the run owes, whatever the setting now
    assert finalize_run_acks(record) == 1


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


# -- ack_many --------------------------------------------------------------------


def test_ack_many_records_all_in_one_transaction(authority: Authority, runs: RunFactory) -> None:
    run_id = runs.at(G)
    recorded = authority.kernel(run_id).ack_many(
        [AckSpec(d, a, result_id=f"{a}-1") for d, a in DOMAIN_PAIRS]
    )
    assert [a.pair for a in recorded] == DOMAIN_PAIRS
    assert len({a.at for a in recorded}) == 1
    assert authority.store.get(run_id).acks == recorded


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([], "at least one"),
        ([AckSpec("incidents", "create_incident")] * (MAX_ACK_BATCH + 1), "at most"),
        (
            [AckSpec("incidents", "create_incident"), AckSpec("orchestrator", "finalize_run")],
            "ack 1: domain 'orchestrator'",
        ),
    ],
)
def test_ack_many_refuses_a_bad_batch_whole(
    authority: Authority, runs: RunFactory, batch: list[AckSpec], message: str
) -> None:
    run_id = runs.at(G)
    before = authority.store.get(run_id)
    with pytest.raises(InvalidRequest, match=message):
        authority.kernel(run_id).ack_many(batch)
    assert authority.store.get(run_id) == before
