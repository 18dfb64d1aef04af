"""Lease fencing on both backends: lifecycle moves on a leased run need its live token;
fail without one is the operator override; acks need none."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from service.authority import Authority
from service.errors import LeaseLost
from service.kernel.kernel import RunOrchestrationKernel
from service.model.phases import RunPhase
from service.store.tables import runs as runs_table
from tests.support.phases import OK, A, C, E, G, X, Z
from tests.support.runs import RunFactory

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
