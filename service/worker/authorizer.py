"""Authorization decisions: the pluggable authorizer and the domains' vetoes.

The pool asks every domain first (the policies domain denies what its rules
forbid), then the user's authorizer (GRANTED by default). Anything that
fails to answer, by raising or hanging, denies: a governance layer fails
closed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence

from service.worker.context import RunContext
from service.worker.hooks import GRANT, Decision, Domain

log = logging.getLogger("rok.worker")

AUTHORIZER_FAILED = "AUTHORIZER_FAILED"

Authorizer = Callable[[RunContext], "Decision | Awaitable[Decision]"]
"""Sync or async; gets the run's context (handler, input, attempt) before it executes."""


def grant_all(_ctx: RunContext) -> Decision:
    return GRANT


async def decide(
    ctx: RunContext,
    domains: Sequence[Domain],
    authorizer: Authorizer,
    timeout_s: float,
) -> Decision:
    """The first domain veto, else the authorizer's decision; errors and hangs deny."""
    for domain in domains:
        try:
            async with asyncio.timeout(timeout_s):
                veto = await domain.authorize(ctx)
        except Exception as exc:  # includes TimeoutError: no answer is a no
            log.warning("domain %s failed to authorize run %s: %r", domain.name, ctx.run_id, exc)
            return Decision(AUTHORIZER_FAILED, f"domain {domain.name} could not decide: {exc!r}")
        if veto is not None and not veto.granted:
            return veto
    try:
        async with asyncio.timeout(timeout_s):
            answer = authorizer(ctx)
            if inspect.isawaitable(answer):
                answer = await answer
    except Exception as exc:
        log.warning("authorizer failed for run %s: %r", ctx.run_id, exc)
        return Decision(AUTHORIZER_FAILED, f"the authorizer could not decide: {exc!r}")
    if not isinstance(answer, Decision):
        return Decision(AUTHORIZER_FAILED, f"the authorizer returned {answer!r}, not a Decision")
    return answer
