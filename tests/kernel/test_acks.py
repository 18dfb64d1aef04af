"""Acks on both backends: recorded as given, refused for the orchestrator domain, kept as
drift on a terminal run, and ack_many's one transaction."""

from __future__ import annotations

import pytest

from service.authority import Authority
from service.errors import InvalidRequest, RunNotFound
from service.kernel.spec import MAX_ACK_BATCH, AckSpec
from service.model.audit import ReconciliationStatus
from service.model.phases import RunPhase
from tests.support.phases import OK, E, G, X
from tests.support.runs import DOMAIN_PAIRS, RunFactory

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
