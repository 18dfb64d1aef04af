"""Running one handler with its time limit and its stop reasons enforced.

Sync handlers run in a daemon thread of their own rather than a shared
executor: a handler past its timeout cannot be killed, only abandoned, and an
abandoned thread must neither hold a pool slot nor keep the process alive at
exit. Async handlers run as tasks and are cancelled when abandoned. Either
way the context is stopped first, so an abandoned handler that calls
`ctx.step`/`ctx.charge`/`ctx.check` again gets `RunCancelled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from service.worker.context import RunContext
from service.worker.outcome import (
    Outcome,
    PolicyViolation,
    RunCancelled,
    RunTimedOut,
)

Handler = Callable[[RunContext], Any]

# How long a cancelled async handler gets to run its `finally` blocks.
CANCEL_GRACE_S = 1.0


def is_async_handler(handler: Handler) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 - callable objects too
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


async def execute(handler: Handler, ctx: RunContext, run_timeout_ms: int) -> Outcome:
    """Run `handler(ctx)` until it returns, raises, times out or the run is stopped."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    ctx.on_stop(lambda _reason: _set_threadsafe(loop, stopped))
    timeout_ms, timeout_reason = _time_limit(ctx, run_timeout_ms)
    if ctx.stopped is not None:  # stopped before it started (lease lost, shutting down)
        return Outcome.stopped(ctx.stopped)

    ctx.started_at = datetime.now(UTC)
    if is_async_handler(handler):
        work: asyncio.Future[Any] = asyncio.ensure_future(handler(ctx))
    else:
        work = _in_thread(loop, handler, ctx)
    stop_waiter = asyncio.ensure_future(stopped.wait())
    try:
        done, _ = await asyncio.wait(
            {work, stop_waiter},
            timeout=timeout_ms / 1000,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        stop_waiter.cancel()
        ctx.ended_at = datetime.now(UTC)
    if work in done:
        return _finished(work, ctx)
    if not done:
        ctx.stop(timeout_reason)
    await _abandon(work)
    reason = ctx.stopped
    assert reason is not None
    return Outcome.stopped(reason)


def _time_limit(ctx: RunContext, run_timeout_ms: int) -> tuple[int, RunCancelled]:
    """The tighter of the run timeout and the policy's max_duration_ms, with its reason."""
    policy_ms = ctx.limits.max_duration_ms
    if policy_ms is not None and policy_ms < run_timeout_ms:
        return policy_ms, PolicyViolation(
            f"handler '{ctx.handler}' ran past max_duration_ms {policy_ms}"
        )
    return run_timeout_ms, RunTimedOut(
        f"handler '{ctx.handler}' ran past its run timeout of {run_timeout_ms} ms and was abandoned"
    )


def _finished(work: asyncio.Future[Any], ctx: RunContext) -> Outcome:
    exc = work.exception()
    if exc is None:
        if ctx.stopped is not None:  # it returned, but after a budget or cancellation stop
            return Outcome.stopped(ctx.stopped)
        return Outcome.succeeded(work.result())
    if ctx.stopped is not None:  # whatever it raised, the stop is why it ended
        return Outcome.stopped(ctx.stopped)
    if isinstance(exc, RunCancelled):  # a handler raising the family on its own
        return Outcome.stopped(exc)
    return Outcome.raised(exc)


async def _abandon(work: asyncio.Future[Any]) -> None:
    # A thread cannot be cancelled: it was stopped through ctx and is left to end
    # alone; cancelling its future makes whatever it returns later be dropped.
    work.cancel()
    if isinstance(work, asyncio.Task):
        await asyncio.wait({work}, timeout=CANCEL_GRACE_S)
    if work.done() and not work.cancelled():
        work.exception()  # retrieved, so asyncio does not log it as never retrieved


def _in_thread(loop: asyncio.AbstractEventLoop, handler: Handler, ctx: RunContext) -> Any:
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    def target() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = handler(ctx)
        except BaseException as exc:  # reported to the pool, never lost in the thread
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    name = f"rok-handler-{ctx.handler}-{ctx.run_id[:8]}"
    threading.Thread(target=target, name=name, daemon=True).start()
    return future


def _set_threadsafe(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(event.set)
