"""The two switches on both backends: RAC_ENABLED=false (runs get no contract),
ROK_ENABLED=false (the ungoverned outcome), and a contract outliving a change of RAC_ENABLED."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.errors import PhaseTransitionError
from service.model.audit import FINALIZE_RUN, ReconciliationStatus
from service.model.phases import RunPhase
from tests.support.authorities import checked_authority, open_authority
from tests.support.invariants import assert_run_valid, finalize_run_acks
from tests.support.phases import NON_TERMINAL, OK, E, G, X, Z, moves
from tests.support.runs import RunFactory

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


# -- ROK_ENABLED=false: the ungoverned outcome ---------------------------------------


@pytest.fixture
def ungoverned_runs(migrated_url: str) -> Iterator[RunFactory]:
    """Runs of a service started with ROK_ENABLED=false (the only one that takes the
    ungoverned outcome: tests/api/test_trust_governance.py)."""
    with checked_authority(migrated_url, rok_enabled=False) as current:
        yield RunFactory(current)


@pytest.mark.parametrize("success", [True, False])
@pytest.mark.parametrize("phase", NON_TERMINAL)
def test_ungoverned_outcome_walks_a_legal_path(
    ungoverned_runs: RunFactory, phase: RunPhase, success: bool
) -> None:
    run_id = ungoverned_runs.at(phase)
    kernel = ungoverned_runs.kernel(run_id)
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
