"""The kernel's moves before governance, on both backends: declaring a run and its
contract, authorize, begin_execution, execution_complete, fail, and the audit clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.authority import Authority
from service.errors import PhaseTransitionError, RunAlreadyExists
from service.kernel.kernel import create_rok
from service.model.audit import DEFAULT_DOMAIN_EXPECTATIONS, FINALIZE_RUN
from service.model.phases import RunPhase
from tests.support.invariants import finalize_run_acks
from tests.support.phases import NON_TERMINAL, A, C, E, G, X, moves
from tests.support.runs import RunFactory

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
