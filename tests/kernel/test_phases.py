"""The phase machine: the whole transition table, its errors and its history."""

from __future__ import annotations

import itertools
from datetime import UTC, timedelta

import pytest

from service.errors import PhaseTransitionError, RokError
from service.model.phases import (
    TERMINAL_PHASES,
    VALID_TRANSITIONS,
    PhaseContext,
    PhaseStateMachine,
    PhaseTransition,
    RunPhase,
    is_valid_transition,
)

C = RunPhase.CREATED
A = RunPhase.AUTHORIZED
E = RunPhase.EXECUTING
G = RunPhase.GOVERNANCE_CHECK
Z = RunPhase.FINALIZING
OK = RunPhase.COMPLETED
X = RunPhase.FAILED

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

    machine = PhaseStateMachine("run-1", phase=current)
    assert machine.can_transition(requested) is expected
    if expected:
        entry = machine.transition(requested, reason="because")
        assert machine.phase is requested
        assert entry.from_phase is current
        assert entry.to_phase is requested
        assert machine.history == [entry]
    else:
        with pytest.raises(PhaseTransitionError) as caught:
            machine.transition(requested)
        assert caught.value.current == current
        assert caught.value.requested == requested
        # a refused move leaves the machine as it was
        assert machine.phase is current
        assert machine.history == []


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
    machine = PhaseStateMachine("run-t", phase=terminal)
    assert machine.is_terminal
    with pytest.raises(PhaseTransitionError, match="is terminal"):
        machine.check(requested)


def test_error_names_run_current_and_requested_phase() -> None:
    machine = PhaseStateMachine("run-42", phase=E)
    with pytest.raises(PhaseTransitionError) as caught:
        machine.transition(OK)
    error = caught.value
    assert isinstance(error, RokError)
    message = str(error)
    assert "run-42" in message
    assert "EXECUTING" in message
    assert "COMPLETED" in message
    assert error.run_id == "run-42"


def test_error_includes_the_reason_given() -> None:
    machine = PhaseStateMachine("run-7", phase=C)
    with pytest.raises(PhaseTransitionError, match="needs a lease"):
        machine.check(G, why="needs a lease")


def test_creation_is_not_a_transition() -> None:
    machine = PhaseStateMachine("run-new")
    assert machine.phase is C
    assert machine.history == []
    assert not machine.is_terminal


def test_first_history_entry_leaves_created() -> None:
    machine = PhaseStateMachine("run-1")
    machine.transition(A)
    assert machine.history[0].from_phase is C


def test_full_happy_path_history() -> None:
    machine = PhaseStateMachine("run-1")
    path = [A, E, G, Z, OK]
    for phase in path:
        machine.transition(phase, reason=f"to {phase}", details={"n": phase.value})
    assert machine.phase is OK
    assert machine.is_terminal
    assert [(h.from_phase, h.to_phase) for h in machine.history] == list(
        itertools.pairwise([C, *path])
    )
    assert [h.reason for h in machine.history] == [f"to {p}" for p in path]
    assert machine.history[2].details == {"n": "GOVERNANCE_CHECK"}


def test_history_timestamps_are_aware_utc_and_ordered() -> None:
    machine = PhaseStateMachine("run-1")
    for phase in (A, E, G, Z, X):
        machine.transition(phase)
    times = [h.at for h in machine.history]
    for at in times:
        assert at.tzinfo is not None
        assert at.utcoffset() == timedelta(0)
        assert at.tzinfo is UTC
    assert times == sorted(times)


def test_history_keeps_an_explicit_time() -> None:
    from datetime import datetime

    at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    machine = PhaseStateMachine("run-1")
    entry = machine.transition(A, at=at)
    assert entry.at == at


def test_details_are_copied_not_shared() -> None:
    details = {"decision": "GRANTED"}
    machine = PhaseStateMachine("run-1")
    entry = machine.transition(A, details=details)
    details["decision"] = "changed"
    assert entry.details == {"decision": "GRANTED"}


def test_machine_rebuilt_from_history_continues() -> None:
    first = PhaseStateMachine("run-1")
    first.transition(A)
    first.transition(E)
    rebuilt = PhaseStateMachine("run-1", phase=first.phase, history=first.history)
    rebuilt.transition(G)
    assert len(rebuilt.history) == 3
    assert len(first.history) == 2  # the history list is copied


def test_history_entries_are_immutable() -> None:
    entry = PhaseStateMachine("run-1").transition(A)
    assert isinstance(entry, PhaseTransition)
    with pytest.raises(AttributeError):
        entry.to_phase = X  # type: ignore[misc]


@pytest.mark.parametrize("phase", list(RunPhase))
def test_phase_context_is_terminal(phase: RunPhase) -> None:
    assert PhaseContext(phase=phase).is_terminal() is (phase in {OK, X})


def test_phase_context_defaults() -> None:
    context = PhaseContext()
    assert context.phase is C
    assert not context.is_terminal()
    assert context.incident_created is False
    assert context.policy_evaluated is False
    assert context.trace_completed is False
    assert context.all_acks_received is False
    assert context.execution_success is None
    assert context.execution_error is None
