"""Invariants of DESIGN.md section 8 as assertions over a stored run, reused by every test.

The API tests check the same invariants over run JSON (tests/api/runs_api.py).
"""

from __future__ import annotations

from datetime import timedelta

from service.model.audit import FINALIZE_RUN
from service.model.phases import VALID_TRANSITIONS, RunPhase
from service.store.records import RunFilter, RunRecord
from service.store.runs import RunStore

CONTROL_EVENTS = ("cancel_requested", "approval_requested", "approved")


def assert_history_valid(record: RunRecord) -> None:
    """Invariant 1: a path through VALID_TRANSITIONS from CREATED, ending at the phase.

    Entries that start a new attempt stay in their phase (from == to): a retry
    is recorded in the history but never moves the run.
    """
    phase = RunPhase.CREATED
    for index, entry in enumerate(record.history):
        move = entry.transition
        assert move.from_phase is phase, (
            f"run {record.id}: entry {index} leaves {move.from_phase}, but the run was in {phase}"
        )
        if move.to_phase is move.from_phase:  # an attempt or a control event: never a move
            assert (
                move.details.get("attempt_started") == entry.attempt
                or move.details.get("event") in CONTROL_EVENTS
            ), (
                f"run {record.id}: entry {index} stays in {phase} but starts no attempt "
                "and records no control event"
            )
            continue
        assert move.to_phase in VALID_TRANSITIONS[move.from_phase], (
            f"run {record.id}: entry {index} {move.from_phase} -> {move.to_phase} is not legal"
        )
        assert move.at.tzinfo is not None and move.at.utcoffset() == timedelta(0), (
            f"run {record.id}: entry {index} time {move.at!r} is not aware UTC"
        )
        assert entry.attempt >= 1
        phase = move.to_phase
    assert record.phase is phase, (
        f"run {record.id}: phase {record.phase} but the history ends at {phase}"
    )
    assert record.row.history_length == len(record.history)


def finalize_run_acks(record: RunRecord) -> int:
    return sum(1 for a in record.acks if a.pair == FINALIZE_RUN)


def assert_finalize_run_ack_valid(record: RunRecord) -> None:
    """Invariant 2: a terminal run with a contract has exactly one finalize_run ack,
    a live run (or a run without a contract) none."""
    count = finalize_run_acks(record)
    owes = any(e.pair == FINALIZE_RUN for e in record.expectations)
    if record.row.is_terminal and owes:
        assert count == 1, f"terminal run {record.id} has {count} finalize_run acks"
    else:
        assert count == 0, f"run {record.id} ({record.phase}) has {count} finalize_run acks"
    for ack in record.acks:
        if ack.pair == FINALIZE_RUN:
            assert ack.late is False
            assert ack.result_id == record.phase.value


def assert_run_valid(record: RunRecord) -> None:
    assert_history_valid(record)
    assert_finalize_run_ack_valid(record)
    if record.row.is_terminal:
        assert record.row.lease is None, f"terminal run {record.id} still holds a lease"


def check_every_run(store: RunStore) -> None:
    """Invariants 1 and 2 (and the lease rule) over every run in the store's database.

    Every fixture that hands out an Authority calls it at teardown, so each test
    also checks the runs it left behind.
    """
    cursor = None
    while True:
        records, cursor = store.list(RunFilter(), 500, cursor)
        for record in records:
            assert_run_valid(record)
        if cursor is None:
            return
