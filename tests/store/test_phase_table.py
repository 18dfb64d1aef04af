"""The store itself refuses every move the phase table forbids, on both backends.

The kernel cannot bypass the table: it is checked where moves are written
(RunTransaction.transition), and the database keeps phase values to the seven.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError

from service.errors import PhaseTransitionError
from service.model.phases import TERMINAL_PHASES, VALID_TRANSITIONS, RunPhase, utc_now
from service.store.runs import RunStore
from service.store.tables import runs, transitions
from tests.store.conftest import new_run

# the shortest legal path from CREATED to each phase
PATH_TO: dict[RunPhase, list[RunPhase]] = {
    RunPhase.CREATED: [],
    RunPhase.AUTHORIZED: [RunPhase.AUTHORIZED],
    RunPhase.EXECUTING: [RunPhase.AUTHORIZED, RunPhase.EXECUTING],
    RunPhase.GOVERNANCE_CHECK: [
        RunPhase.AUTHORIZED,
        RunPhase.EXECUTING,
        RunPhase.GOVERNANCE_CHECK,
    ],
    RunPhase.FINALIZING: [
        RunPhase.AUTHORIZED,
        RunPhase.EXECUTING,
        RunPhase.GOVERNANCE_CHECK,
        RunPhase.FINALIZING,
    ],
    RunPhase.COMPLETED: [
        RunPhase.AUTHORIZED,
        RunPhase.EXECUTING,
        RunPhase.GOVERNANCE_CHECK,
        RunPhase.FINALIZING,
        RunPhase.COMPLETED,
    ],
    RunPhase.FAILED: [RunPhase.FAILED],
}


def run_in(store: RunStore, phase: RunPhase) -> str:
    new = new_run()
    store.create(new)
    for step in PATH_TO[phase]:
        with store.transaction(new.id, utc_now) as tx:
            tx.transition(step, f"to {step}")
    return new.id


@pytest.mark.parametrize("current", list(RunPhase))
def test_the_store_refuses_every_forbidden_move(store: RunStore, current: RunPhase) -> None:
    run_id = run_in(store, current)
    before = store.get(run_id)
    forbidden = [p for p in RunPhase if p not in VALID_TRANSITIONS[current]]
    assert forbidden, "every phase forbids at least moving to itself"
    for requested in forbidden:
        with (
            pytest.raises(PhaseTransitionError) as caught,
            store.transaction(run_id, utc_now) as tx,
        ):
            tx.transition(requested, "asked for directly")
        assert (caught.value.current, caught.value.requested) == (current, requested)
        assert store.get(run_id) == before, f"{current} -> {requested} wrote something"


@pytest.mark.parametrize("current", sorted(TERMINAL_PHASES))
def test_an_attempt_entry_is_refused_on_a_terminal_run(store: RunStore, current: RunPhase) -> None:
    run_id = run_in(store, current)
    before = store.get(run_id)
    with pytest.raises(PhaseTransitionError), store.transaction(run_id, utc_now) as tx:
        tx.record_attempt(2, "a retry of a finished run")
    assert store.get(run_id) == before


def test_the_attempt_entry_is_the_one_move_from_a_phase_to_itself(store: RunStore) -> None:
    run_id = run_in(store, RunPhase.EXECUTING)
    with store.transaction(run_id, utc_now) as tx:
        entry = tx.record_attempt(2, "worker lost")
    assert (entry.from_phase, entry.to_phase) == (RunPhase.EXECUTING, RunPhase.EXECUTING)
    record = store.get(run_id)
    assert record.row.attempt == 2
    assert record.history[-1].attempt == 2


@pytest.mark.parametrize(
    ("table", "column"),
    [(runs, "phase"), (transitions, "from_phase"), (transitions, "to_phase")],
)
def test_the_database_keeps_phase_values_to_the_seven(
    store: RunStore, table: object, column: str
) -> None:
    run_id = run_in(store, RunPhase.AUTHORIZED)
    before = store.get(run_id)
    key = runs.c.id if table is runs else transitions.c.run_id
    target = runs if table is runs else transitions
    with pytest.raises(IntegrityError), store.db.write() as conn:
        conn.execute(update(target).where(key == run_id).values({column: "PAUSED"}))
    assert store.get(run_id) == before
    with store.db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 1
