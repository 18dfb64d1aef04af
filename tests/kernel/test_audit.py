"""The runtime audit contract: reconcile() rule by rule, contracts, and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.model.audit import (
    DEFAULT_DOMAIN_EXPECTATIONS,
    FINALIZE_RUN,
    AuditExpectation,
    DomainAck,
    ExpectationStatus,
    ReconciliationResult,
    ReconciliationStatus,
    custom_contract,
    default_contract,
    expectation_deadline,
    expectation_status,
    governance_outstanding,
    reconcile,
)

RUN = "run-1"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
DEADLINE_MS = 10_000
DEADLINE = T0 + timedelta(milliseconds=DEADLINE_MS)
BEFORE = T0 + timedelta(seconds=1)
AFTER = DEADLINE + timedelta(seconds=1)

INCIDENT = ("incidents", "create_incident")
POLICY = ("policies", "evaluate_policy")
START = ("logs", "start_trace")
COMPLETE_TRACE = ("logs", "complete_trace")


def expect(
    pair: tuple[str, str],
    deadline_ms: int | None = DEADLINE_MS,
    started: datetime | None = T0,
) -> AuditExpectation:
    return AuditExpectation(
        RUN, pair[0], pair[1], deadline_ms, expectation_deadline(started, deadline_ms)
    )


def ack(
    pair: tuple[str, str],
    at: datetime = BEFORE,
    error: str | None = None,
    late: bool = False,
) -> DomainAck:
    return DomainAck(RUN, pair[0], pair[1], "r-1", error, at, late)


def contract(*pairs: tuple[str, str], started: datetime | None = T0) -> list[AuditExpectation]:
    return [expect(p, started=started) for p in pairs]


FULL = (INCIDENT, POLICY, START, COMPLETE_TRACE, FINALIZE_RUN)
DOMAIN_PAIRS = (INCIDENT, POLICY, START, COMPLETE_TRACE)


# -- missing and pending -------------------------------------------------------


def test_unacked_expectation_is_pending_before_a_check_ended() -> None:
    result = reconcile(contract(INCIDENT), [], BEFORE)
    assert result.missing == []
    assert result.pending == [INCIDENT]
    assert result.status is ReconciliationStatus.PENDING  # evidence not in: never COMPLETE


def test_unacked_expectation_is_missing_after_a_check_ended() -> None:
    result = reconcile(contract(INCIDENT), [], BEFORE, check_ended=True)
    assert result.missing == [INCIDENT]
    assert result.pending == []
    assert result.status is ReconciliationStatus.INCOMPLETE


def test_unacked_expectation_is_missing_once_its_deadline_passed() -> None:
    result = reconcile(contract(INCIDENT), [], AFTER)
    assert result.missing == [INCIDENT]
    assert result.status is ReconciliationStatus.INCOMPLETE


def test_deadline_boundary_is_missing_at_the_deadline_itself() -> None:
    assert reconcile(contract(INCIDENT), [], DEADLINE).missing == [INCIDENT]
    just_before = DEADLINE - timedelta(microseconds=1)
    assert reconcile(contract(INCIDENT), [], just_before).missing == []


def test_unacked_expectation_is_missing_on_a_terminal_run() -> None:
    result = reconcile(contract(INCIDENT), [], BEFORE, terminal=True)
    assert result.missing == [INCIDENT]


def test_clock_not_started_is_never_missing_by_deadline() -> None:
    far_future = T0 + timedelta(days=365)
    result = reconcile(contract(INCIDENT, FINALIZE_RUN, started=None), [], far_future)
    assert result.missing == []
    assert sorted(result.pending) == sorted([INCIDENT, FINALIZE_RUN])
    assert result.stale is False
    assert result.status is ReconciliationStatus.PENDING


def test_acked_expectation_is_neither_missing_nor_pending() -> None:
    for check_ended in (False, True):
        result = reconcile(contract(INCIDENT), [ack(INCIDENT)], AFTER, check_ended=check_ended)
        assert result.missing == []
        assert result.pending == []


def test_ack_after_the_deadline_still_counts_as_evidence() -> None:
    result = reconcile(contract(INCIDENT), [ack(INCIDENT, at=AFTER)], AFTER)
    assert result.missing == []


def test_finalize_run_is_pending_during_a_governance_check() -> None:
    expectations = contract(*FULL)
    acks = [ack(p) for p in DOMAIN_PAIRS]
    result = reconcile(expectations, acks, BEFORE, check_ended=True)
    assert FINALIZE_RUN not in result.missing
    assert result.pending == [FINALIZE_RUN]
    assert result.stale is False
    assert result.status is ReconciliationStatus.COMPLETE


def test_finalize_run_is_never_missing_during_a_check_even_with_others_missing() -> None:
    result = reconcile(contract(*FULL), [], BEFORE, check_ended=True)
    assert result.missing == sorted(DOMAIN_PAIRS)
    assert result.pending == [FINALIZE_RUN]


def test_finalize_run_is_missing_on_a_terminal_run_without_its_ack() -> None:
    result = reconcile(contract(FINALIZE_RUN), [], BEFORE, check_ended=True, terminal=True)
    assert result.missing == [FINALIZE_RUN]
    assert result.stale is False


def test_expectation_status_function() -> None:
    exp = expect(INCIDENT)
    assert expectation_status(exp, {INCIDENT}, AFTER, True, True) is ExpectationStatus.ACKED
    assert expectation_status(exp, set(), BEFORE, False, False) is ExpectationStatus.PENDING
    assert expectation_status(exp, set(), BEFORE, True, False) is ExpectationStatus.MISSING
    assert expectation_status(exp, set(), AFTER, False, False) is ExpectationStatus.MISSING
    fin = expect(FINALIZE_RUN)
    assert expectation_status(fin, set(), BEFORE, True, False) is ExpectationStatus.PENDING
    assert expectation_status(fin, set(), BEFORE, True, True) is ExpectationStatus.MISSING
    assert expectation_status(fin, set(), AFTER, True, False) is ExpectationStatus.MISSING


# -- stale -----------------------------------------------------------------------


def test_not_stale_before_finalize_run_deadline() -> None:
    result = reconcile(contract(*FULL), [], BEFORE)
    assert result.stale is False


def test_stale_when_finalize_run_deadline_passed_unacked() -> None:
    acks = [ack(p) for p in DOMAIN_PAIRS]
    result = reconcile(contract(*FULL), acks, AFTER)
    assert result.stale is True
    assert result.status is ReconciliationStatus.STALE


def test_not_stale_when_finalize_run_acked_before_its_deadline() -> None:
    acks = [ack(p) for p in FULL]
    result = reconcile(contract(*FULL), acks, AFTER, check_ended=True, terminal=True)
    assert result.stale is False
    assert result.status is ReconciliationStatus.COMPLETE


def test_stale_when_finalize_run_acked_after_its_deadline() -> None:
    acks = [ack(p) for p in DOMAIN_PAIRS] + [ack(FINALIZE_RUN, at=AFTER)]
    result = reconcile(contract(*FULL), acks, AFTER, check_ended=True, terminal=True)
    assert result.stale is True
    assert result.missing == []
    assert result.status is ReconciliationStatus.STALE


def test_other_deadlines_passing_is_not_stale() -> None:
    # only finalize_run judges liveness
    short = [expect(INCIDENT, deadline_ms=1), expect(FINALIZE_RUN)]
    result = reconcile(short, [], BEFORE)
    assert result.missing == [INCIDENT]
    assert result.stale is False
    assert result.status is ReconciliationStatus.INCOMPLETE


def test_no_finalize_run_expectation_is_never_stale() -> None:
    assert reconcile(contract(INCIDENT), [], AFTER).stale is False


# -- drift -----------------------------------------------------------------------


def test_unexpected_ack_is_drift() -> None:
    result = reconcile(contract(INCIDENT), [ack(INCIDENT), ack(("billing", "charge"))], BEFORE)
    assert result.drift == [("billing", "charge")]
    assert result.missing == []


def test_second_ack_of_one_pair_is_drift() -> None:
    result = reconcile(contract(INCIDENT), [ack(INCIDENT), ack(INCIDENT)], BEFORE)
    assert result.drift == [INCIDENT]
    assert result.missing == []


def test_late_ack_on_terminal_run_is_drift_and_not_evidence() -> None:
    acks = [ack(FINALIZE_RUN), ack(INCIDENT, late=True)]
    result = reconcile(contract(INCIDENT, FINALIZE_RUN), acks, BEFORE, terminal=True)
    assert result.drift == [INCIDENT]
    assert result.missing == [INCIDENT]


def test_late_ack_of_an_already_acked_pair_is_drift() -> None:
    acks = [ack(INCIDENT), ack(INCIDENT, late=True)]
    result = reconcile(contract(INCIDENT), acks, BEFORE, terminal=True)
    assert result.drift == [INCIDENT]
    assert result.missing == []


def test_drift_alone_makes_incomplete() -> None:
    acks = [ack(INCIDENT), ack(("billing", "charge"))]
    result = reconcile(contract(INCIDENT), acks, BEFORE, check_ended=True)
    assert result.missing == result.failed == result.invalid == []
    assert result.stale is False
    assert result.status is ReconciliationStatus.INCOMPLETE


# -- failed and invalid -------------------------------------------------------------


def test_ack_with_error_is_failed_and_not_missing() -> None:
    result = reconcile(contract(INCIDENT), [ack(INCIDENT, error="boom")], BEFORE, check_ended=True)
    assert result.failed == [INCIDENT]
    assert result.missing == []
    assert result.status is ReconciliationStatus.INCOMPLETE


def test_failed_lists_each_pair_once() -> None:
    acks = [ack(INCIDENT, error="a"), ack(INCIDENT, error="b")]
    assert reconcile(contract(INCIDENT), acks, BEFORE).failed == [INCIDENT]


def test_ack_without_error_is_not_failed() -> None:
    assert reconcile(contract(INCIDENT), [ack(INCIDENT)], BEFORE).failed == []


def test_expectation_without_deadline_ms_is_invalid() -> None:
    result = reconcile([expect(INCIDENT, deadline_ms=None)], [ack(INCIDENT)], AFTER)
    assert result.invalid == [INCIDENT]
    assert result.missing == []
    assert result.status is ReconciliationStatus.INCOMPLETE


# -- status precedence ------------------------------------------------------------


def test_complete_when_everything_is_acked() -> None:
    result = reconcile(contract(*FULL), [ack(p) for p in FULL], BEFORE, True, True)
    assert result == ReconciliationResult(ReconciliationStatus.COMPLETE)


def test_stale_wins_over_incomplete() -> None:
    acks = [ack(INCIDENT, error="boom"), ack(("x", "y"))]
    exps = [*contract(INCIDENT, POLICY, FINALIZE_RUN), expect(START, deadline_ms=None)]
    result = reconcile(exps, acks, AFTER, check_ended=True)
    assert result.missing and result.drift and result.failed and result.invalid
    assert result.stale
    assert result.status is ReconciliationStatus.STALE


def test_incomplete_wins_over_complete() -> None:
    result = reconcile(contract(INCIDENT, POLICY), [ack(INCIDENT)], BEFORE, check_ended=True)
    assert result.status is ReconciliationStatus.INCOMPLETE


def test_empty_contract_is_complete() -> None:
    assert reconcile([], [], AFTER, True, True).status is ReconciliationStatus.COMPLETE


# -- serialisation and helpers ----------------------------------------------------


def test_to_dict_and_from_dict_round_trip() -> None:
    acks = [ack(INCIDENT, error="boom"), ack(("x", "y"))]
    result = reconcile(contract(INCIDENT, POLICY, FINALIZE_RUN), acks, AFTER, check_ended=True)
    data = result.to_dict()
    assert data["status"] == "STALE"
    assert data["missing"] == [list(FINALIZE_RUN), ["policies", "evaluate_policy"]]
    assert data["stale"] is True
    back = ReconciliationResult.from_dict(data)
    assert back.status is result.status
    assert (back.missing, back.drift, back.invalid, back.failed, back.stale) == (
        result.missing,
        result.drift,
        result.invalid,
        result.failed,
        result.stale,
    )


def test_governance_outstanding_ignores_orchestrator_and_late_acks() -> None:
    acks = [ack(INCIDENT), ack(POLICY, late=True)]
    assert governance_outstanding(contract(*FULL), acks) == sorted([POLICY, START, COMPLETE_TRACE])
    assert governance_outstanding(contract(FINALIZE_RUN), []) == []


def test_expectation_deadline() -> None:
    assert expectation_deadline(None, 5) is None
    assert expectation_deadline(T0, None) is None
    assert expectation_deadline(T0, 1500) == T0 + timedelta(milliseconds=1500)


# -- contracts ---------------------------------------------------------------------


def test_default_contract_is_four_domains_plus_finalize_run_at_timeout_plus_grace() -> None:
    result = default_contract(30_000, 5_000)
    assert [(d, a) for d, a, _ in result] == [*DEFAULT_DOMAIN_EXPECTATIONS, FINALIZE_RUN]
    assert {ms for _, _, ms in result} == {35_000}
    assert DEFAULT_DOMAIN_EXPECTATIONS == (INCIDENT, POLICY, START, COMPLETE_TRACE)


def test_custom_contract_replaces_the_domains_and_adds_finalize_run() -> None:
    result = custom_contract([("billing", "charge", 100), ("audit", "log", None)], 1_000, 50)
    assert result == [
        ("billing", "charge", 100),
        ("audit", "log", 1_050),
        (*FINALIZE_RUN, 1_050),
    ]


def test_custom_contract_empty_leaves_only_finalize_run() -> None:
    assert custom_contract([], 2_000, 500) == [(*FINALIZE_RUN, 2_500)]


def test_custom_contract_deduplicates_pairs() -> None:
    result = custom_contract([("a", "b", 1), ("a", "b", 2)], 10, 0)
    assert result == [("a", "b", 2), (*FINALIZE_RUN, 10)]


# -- properties --------------------------------------------------------------------

PAIRS = [INCIDENT, POLICY, START, COMPLETE_TRACE, FINALIZE_RUN, ("x", "y"), ("x", "z")]
OFFSETS = st.integers(min_value=-5_000, max_value=30_000)

expectation_strategy = st.builds(
    lambda pair, ms, started: expect(pair, deadline_ms=ms, started=T0 if started else None),
    st.sampled_from(PAIRS),
    st.one_of(st.none(), st.integers(min_value=0, max_value=20_000)),
    st.booleans(),
)
ack_strategy = st.builds(
    lambda pair, offset, error, late: ack(
        pair, at=T0 + timedelta(milliseconds=offset), error=error, late=late
    ),
    st.sampled_from(PAIRS),
    OFFSETS,
    st.one_of(st.none(), st.just("boom")),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    expectations=st.lists(expectation_strategy, max_size=7, unique_by=lambda e: e.pair),
    acks=st.lists(ack_strategy, max_size=10),
    now_offset=OFFSETS,
    check_ended=st.booleans(),
    terminal=st.booleans(),
)
def test_reconcile_properties(
    expectations: list[AuditExpectation],
    acks: list[DomainAck],
    now_offset: int,
    check_ended: bool,
    terminal: bool,
) -> None:
    now = T0 + timedelta(milliseconds=now_offset)
    result = reconcile(expectations, acks, now, check_ended=check_ended, terminal=terminal)

    expected = {e.pair for e in expectations}
    acked_timely = {a.pair for a in acks if not a.late}
    unexpected = {a.pair for a in acks} - expected

    assert not set(result.missing) & acked_timely
    assert set(result.drift) >= unexpected
    assert set(result.drift) >= {a.pair for a in acks if a.late}
    assert not set(result.missing) & set(result.pending)
    assert set(result.missing) | set(result.pending) == expected - acked_timely
    assert set(result.failed) == {a.pair for a in acks if not a.late and a.error}
    assert set(result.invalid) == {e.pair for e in expectations if e.deadline_ms is None}
    assert result.stale == (result.status is ReconciliationStatus.STALE)
    all_empty = not (result.missing or result.drift or result.invalid or result.failed)
    domain_pending = [p for p in result.pending if p != FINALIZE_RUN]
    assert (result.status is ReconciliationStatus.COMPLETE) == (
        all_empty and not result.stale and not domain_pending
    )
    assert (result.status is ReconciliationStatus.PENDING) == (
        all_empty and not result.stale and bool(domain_pending)
    )
    if FINALIZE_RUN not in expected:
        assert result.stale is False
    if check_ended and not terminal:
        # a governance check never makes finalize_run missing before its deadline
        fin = [e for e in expectations if e.pair == FINALIZE_RUN]
        if fin and (fin[0].deadline is None or now < fin[0].deadline):
            assert FINALIZE_RUN not in result.missing


@pytest.mark.parametrize("terminal", [False, True])
def test_reconcile_is_deterministic_on_order(terminal: bool) -> None:
    acks = [ack(POLICY), ack(INCIDENT, error="e"), ack(("x", "y")), ack(("a", "b"))]
    forward = reconcile(contract(*FULL), acks, BEFORE, True, terminal)
    backward = reconcile(
        list(reversed(contract(*FULL))), list(reversed(acks)), BEFORE, True, terminal
    )
    assert forward == backward
