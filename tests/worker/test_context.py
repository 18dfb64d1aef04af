"""The handler context: steps, costs, budgets and the first stop reason winning."""

from __future__ import annotations

import threading

import pytest

from service.worker.context import Limits, RunContext, Step
from service.worker.outcome import (
    LeaseRevoked,
    Outcome,
    OutcomeKind,
    PolicyViolation,
    RunCancelled,
    RunTimedOut,
    describe_exception,
)


def context(limits: Limits | None = None) -> RunContext:
    return RunContext({"id": "r1", "handler": "h", "input": None, "attempt": 2}, "w", limits)


def test_steps_and_costs_are_recorded_and_listeners_see_each_step() -> None:
    ctx = context()
    seen: list[Step] = []
    ctx.on_step(seen.append)
    ctx.step("plan", goal="x")
    ctx.charge(0.5)
    ctx.charge(0.25)
    assert [s.name for s in ctx.steps] == ["plan"] and ctx.steps[0].attributes == {"goal": "x"}
    assert ctx.cost == 0.75 and seen == ctx.steps and ctx.attempt == 2


def test_the_step_that_crosses_max_steps_raises_and_stops_the_run() -> None:
    ctx = context(Limits(max_steps=2))
    ctx.step("a")
    ctx.step("b")
    with pytest.raises(PolicyViolation, match="3 steps exceed max_steps 2 of handler 'h'"):
        ctx.step("c")
    with pytest.raises(PolicyViolation):
        ctx.check()


def test_the_first_stop_reason_wins_and_listeners_hear_it_once() -> None:
    ctx = context()
    heard: list[RunCancelled] = []
    ctx.on_stop(heard.append)
    first = LeaseRevoked("fenced")
    assert ctx.stop(first) is True
    assert ctx.stop(RunTimedOut("later")) is False
    assert heard == [first] and ctx.stopped is first
    late: list[RunCancelled] = []
    ctx.on_stop(late.append)  # registered after the stop: told at once
    assert late == [first]


def test_charges_from_many_threads_add_up() -> None:
    ctx = context()

    def spend() -> None:
        for _ in range(1000):
            ctx.charge(1)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ctx.cost == 8000


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("timeout: handler 'h' ran past its run timeout of 5 ms", OutcomeKind.TIMEOUT),
        ("policy violation: cost 3 exceeds max_cost 2", OutcomeKind.POLICY_VIOLATION),
        ("worker shutting down: drain over", OutcomeKind.SHUTDOWN),
        ("ValueError: bad input", OutcomeKind.HANDLER_ERROR),
        (None, OutcomeKind.HANDLER_ERROR),
    ],
)
def test_the_kind_of_a_recorded_error_is_recovered_from_its_prefix(
    error: str | None, kind: OutcomeKind
) -> None:
    assert OutcomeKind.from_error(error) is kind


def test_a_recorded_outcome_prefers_the_execution_error_over_the_release_message() -> None:
    run = {
        "execution_success": False,
        "error": "worker lost: lease of worker w expired; released for attempt 2",
        "history": [
            {"to": "EXECUTING", "reason": "execution started"},
            {"to": "GOVERNANCE_CHECK", "reason": "execution failed: timeout: too slow"},
        ],
    }
    outcome = Outcome.recorded(run)
    assert outcome.kind is OutcomeKind.TIMEOUT and outcome.error == "timeout: too slow"
    assert Outcome.recorded({"execution_success": True}).success


def test_a_described_exception_is_bounded() -> None:
    try:
        raise RuntimeError("x" * 10_000)
    except RuntimeError as exc:
        text = describe_exception(exc)
    assert len(text) <= 4000 and text.startswith("RuntimeError: xxx") and text.endswith("...")
