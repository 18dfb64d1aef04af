"""ROK_RATE_LIMIT (DESIGN section 9): at most so many requests per principal, else 429.

A moving window per principal (its API key; the anonymous caller with auth
off), kept in this process's memory by the `limits` library: each replica
limits on its own, so N replicas let a key through up to N times the rate.
Public paths (health, docs) have no principal and are not limited. A refusal
is a 429 problem (`rate_limited`) naming the limit, with `Retry-After` in whole seconds
(at least 1): when the oldest request in the window leaves it.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.auth import principal_of
from service.api.errors import RATE_LIMITED, send_problem


class RateLimit:
    """ASGI middleware: ROK_RATE_LIMIT per principal, inside AuthGate (which names it)."""

    def __init__(self, app: ASGIApp, limit: str | None) -> None:
        self.app = app
        self.limit = limit
        self.items: list[RateLimitItem] = parse_many(limit) if limit else []
        self._limiter: MovingWindowRateLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = principal_of(scope) if scope["type"] == "http" and self.items else None
        if principal is None:
            await self.app(scope, receive, send)
            return
        retry_after = self.hit(principal.id)
        if retry_after is None:
            await self.app(scope, receive, send)
            return
        detail = (
            f"rate limit of {self.limit} per key exceeded (ROK_RATE_LIMIT); "
            f"retry in {retry_after} s"
        )
        await send_problem(scope, send, RATE_LIMITED, detail, {"Retry-After": str(retry_after)})

    def hit(self, who: str) -> int | None:
        """Count one request of `who`; None if allowed, else the seconds until it would be.

        No await between the test and the hit: on one event loop, nothing
        else counts in between, and a refused request costs no budget.
        """
        if self._limiter is None:
            self._limiter = MovingWindowRateLimiter(MemoryStorage())
        limiter = self._limiter
        for item in self.items:
            if not limiter.test(item, who):
                reset_at = limiter.get_window_stats(item, who).reset_time
                return max(1, math.ceil(reset_at - time.time()))
        for item in self.items:
            limiter.hit(item, who)
        return None
