"""Running a handler: its result, its exception, its timeout, its stop, sync or async."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest

from service.worker.context import Limits, RunContext
from service.worker.execution import execute
from service.worker.outcome import (
    OutcomeKind,
    PolicyViolation,
    RunCancelled,
    WorkerShuttingDown,
)


def context(limits: Limits | None = None, **run: Any) -> RunContext:
    data = {"id": "run-1", "handler": "job", "input": {"n": 1}, "attempt": 1, **run}
    return RunContext(data, "worker-1", limits)


def run_handler(handler: Any, ctx: RunContext, timeout_ms: int = 5000) -> Any:
    return asyncio.run(execute(handler, ctx, timeout_ms))


def test_a_sync_and_an_async_handler_return_their_result() -> None:
    async def double(ctx: RunContext) -> int:
        return int(ctx.input["n"]) * 2

    assert run_handler(lambda ctx: "sync", context()).result == "sync"
    outcome = run_handler(double, context())
    assert outcome.kind is OutcomeKind.SUCCEEDED and outcome.result == 2 and outcome.error is None


def test_an_exception_is_the_error_with_a_short_traceback() -> None:
    def broken(ctx: RunContext) -> None:
        raise KeyError("customer_id")

    outcome = run_handler(broken, context())
    assert outcome.kind is OutcomeKind.HANDLER_ERROR
    first, *rest = outcome.error.splitlines()
    assert first == "KeyError: 'customer_id'"
    assert rest[0] == "traceback (innermost last):"
    assert any("in broken" in line for line in rest)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_handler_past_its_timeout_is_abandoned_and_later_ctx_calls_raise(flavour: str) -> None:
    release = threading.Event()
    after_abandon: list[BaseException] = []

    def sync_stuck(ctx: RunContext) -> None:
        release.wait(10)
        try:
            ctx.step("too late")
        except RunCancelled as exc:
            after_abandon.append(exc)

    async def async_stuck(ctx: RunContext) -> None:
        await asyncio.sleep(10)

    ctx = context()
    outcome = run_handler(sync_stuck if flavour == "sync" else async_stuck, ctx, timeout_ms=50)
    release.set()

    assert outcome.kind is OutcomeKind.TIMEOUT
    assert outcome.error == (
        "timeout: handler 'job' ran past its run timeout of 50 ms and was abandoned"
    )
    if flavour == "sync":
        for _ in range(200):
            if after_abandon:
                break
            threading.Event().wait(0.01)
        assert len(after_abandon) == 1, "the abandoned thread's ctx calls raise"
    assert ctx.steps == []


def test_max_duration_tighter_than_the_timeout_is_a_policy_violation() -> None:
    async def slow(ctx: RunContext) -> None:
        await asyncio.sleep(10)

    outcome = run_handler(slow, context(Limits(max_duration_ms=30)), timeout_ms=5000)
    assert outcome.kind is OutcomeKind.POLICY_VIOLATION
    assert outcome.error == "policy violation: handler 'job' ran past max_duration_ms 30"


def test_a_stop_from_outside_ends_the_execution_with_its_reason() -> None:
    started = threading.Event()

    def loop_forever(ctx: RunContext) -> None:
        started.set()
        while True:
            ctx.check()
            threading.Event().wait(0.005)

    ctx = context()

    async def main() -> Any:
        task = asyncio.ensure_future(execute(loop_forever, ctx, 10_000))
        await asyncio.to_thread(started.wait, 10)
        ctx.stop(WorkerShuttingDown("drain over"))
        return await task

    outcome = asyncio.run(main())
    assert outcome.kind is OutcomeKind.SHUTDOWN
    assert outcome.error == "worker shutting down: drain over"


def test_a_run_stopped_before_it_started_never_calls_the_handler() -> None:
    called = threading.Event()
    ctx = context()
    ctx.stop(RunCancelled("failed by an operator"))

    outcome = run_handler(lambda c: called.set(), ctx)
    assert outcome.kind is OutcomeKind.CANCELLED and not called.is_set()


def test_a_handler_swallowing_its_budget_violation_is_still_stopped() -> None:
    """The stop wakes the watchdog at once: the run fails even if the thread goes on."""
    charges: list[int] = []

    def stubborn(ctx: RunContext) -> str:
        for n in range(5):
            charges.append(n)
            with contextlib.suppress(PolicyViolation):
                ctx.charge(1.0)
        return "pretends it finished"

    outcome = run_handler(stubborn, context(Limits(max_cost=2.0)))
    assert outcome.kind is OutcomeKind.POLICY_VIOLATION
    assert outcome.error == "policy violation: cost 3 exceeds max_cost 2 of handler 'job'"
    assert charges[:3] == [0, 1, 2]  # abandoned at the third charge, whatever it does next
