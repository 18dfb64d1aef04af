"""The phase table: every pair of phases, allowed or refused, and its errors.

That the store enforces it on every write is tested in tests/store/test_phase_table.py.
"""

from __future__ import annotations

import itertools
from datetime import UTC, timedelta

import pytest

from service.errors import PhaseTransitionError, RokError
from service.model.phases import (
    TERMINAL_PHASES,
    VALID_TRANSITIONS,
    PhaseTransition,
    RunPhase,
    check_transition,
    is_valid_transition,
    utc_now,
)
from tests.support.phases import OK, A, C, E, G, X, Z

# DESIGN.md section 1, written out by hand: the only legal moves.
ALLOWED: frozenset[tuple[RunPhase, RunPhase]] = frozenset(
    {
        (C, A),
        (C, X),
        (A, E),
        (A, X),
        (E, G),
        (E, X),
        (G, Z),
        (G, X),
        (Z, OK),
        (Z, X),
    }
)

ALL_PAIRS = list(itertools.product(RunPhase, RunPhase))


def test_there_are_seven_phases_and_forty_nine_pairs() -> None:
    assert [p.value for p in RunPhase] == [
        "CREATED",
        "AUTHORIZED",
        "EXECUTING",
        "GOVERNANCE_CHECK",
        "FINALIZING",
        "COMPLETED",
        "FAILED",
    ]
    assert len(ALL_PAIRS) == 49


def test_table_has_an_entry_for_every_phase() -> None:
    assert set(VALID_TRANSITIONS) == set(RunPhase)


@pytest.mark.parametrize(
    ("current", "requested"), ALL_PAIRS, ids=[f"{a.value}->{b.value}" for a, b in ALL_PAIRS]
)
def test_transition_table_pair(current: RunPhase, requested: RunPhase) -> None:
    expected = (current, requested) in ALLOWED
    assert (requested in VALID_TRANSITIONS[current]) is expected
    assert is_valid_transition(current, requested) is expected
    if expected:
        check_transition("run-1", current, requested)
    else:
        with pytest.raises(PhaseTransitionError) as caught:
            check_transition("run-1", current, requested)
        assert caught.value.current == current
        assert caught.value.requested == requested


def test_terminal_phases() -> None:
    assert frozenset({OK, X}) == TERMINAL_PHASES
    for phase in TERMINAL_PHASES:
        assert VALID_TRANSITIONS[phase] == frozenset()


def test_every_non_terminal_phase_can_fail() -> None:
    for phase in set(RunPhase) - TERMINAL_PHASES:
        assert X in VALID_TRANSITIONS[phase]


@pytest.mark.parametrize("terminal", sorted(TERMINAL_PHASES))
@pytest.mark.parametrize("requested", list(RunPhase))
def test_nothing_leaves_a_terminal_phase(terminal: RunPhase, requested: RunPhase) -> None:
    with pytest.raises(PhaseTransitionError, match="is terminal"):
        check_transition("run-t", terminal, requested)


def test_error_names_run_current_and_requested_phase() -> None:
    with pytest.raises(PhaseTransitionError) as caught:
        check_transition("run-42", E, OK)
    error = caught.value
    assert isinstance(error, RokError)
    message = str(error)
    assert "run-42" in message
    assert "EXECUTING" in message
    assert "COMPLETED" in message
    assert error.run_id == "run-42"


def test_every_non_terminal_phase_has_one_way_forward_and_failure() -> None:
    # the happy path is a line: from each live phase exactly one move goes on
    path = [C]
    while path[-1] not in TERMINAL_PHASES:
        onward = VALID_TRANSITIONS[path[-1]] - {X}
        assert len(onward) == 1
        path.append(next(iter(onward)))
    assert path == [C, A, E, G, Z, OK]


def test_history_timestamps_are_aware_utc() -> None:
    at = utc_now()
    assert at.tzinfo is UTC
    assert at.utcoffset() == timedelta(0)


def test_history_entries_are_immutable() -> None:
    entry = PhaseTransition(C, A, utc_now(), "granted", {"decision": "GRANTED"})
    with pytest.raises(AttributeError):
        entry.to_phase = X  # type: ignore[misc]
