"""Misbehaving domains, for tests and chaos demos: one that raises, one that hangs.

They wrap a real domain and break the hooks named in `hooks`, so a test can
show that a domain's failure ends as a failed or missing ack, never as a
stuck run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from service.worker import AckChannel, Decision, Domain, Outcome, RunContext, Step, Wrapped


class DomainFault(RuntimeError):
    """What a `Raising` domain raises."""


class _Faulty(Wrapped):
    def __init__(self, inner: Domain, hooks: Collection[str]) -> None:
        super().__init__(inner)
        self.hooks = frozenset(hooks)

    async def fault(self, hook: str) -> None:
        raise NotImplementedError

    async def on_denied(self, ctx: RunContext, decision: Decision, acks: AckChannel) -> None:
        if "on_denied" in self.hooks:
            await self.fault("on_denied")
        await super().on_denied(ctx, decision, acks)

    async def on_execution_start(self, ctx: RunContext, acks: AckChannel) -> None:
        if "on_execution_start" in self.hooks:
            await self.fault("on_execution_start")
        await super().on_execution_start(ctx, acks)

    async def on_step(self, ctx: RunContext, step: Step, acks: AckChannel) -> None:
        if "on_step" in self.hooks:
            await self.fault("on_step")
        await super().on_step(ctx, step, acks)

    async def on_execution_end(self, ctx: RunContext, outcome: Outcome, acks: AckChannel) -> None:
        if "on_execution_end" in self.hooks:
            await self.fault("on_execution_end")
        await super().on_execution_end(ctx, outcome, acks)


class Raising(_Faulty):
    """Raises `DomainFault` in the chosen hooks instead of doing its job."""

    def __init__(
        self, inner: Domain, hooks: Collection[str] = ("on_execution_end",), message: str = ""
    ) -> None:
        super().__init__(inner, hooks)
        self.message = message or f"{inner.name} is broken"

    async def fault(self, hook: str) -> None:
        raise DomainFault(f"{self.message} (in {hook})")


class Hanging(_Faulty):
    """Never returns from the chosen hooks (until the pool cancels it)."""

    def __init__(self, inner: Domain, hooks: Collection[str] = ("on_execution_end",)) -> None:
        super().__init__(inner, hooks)
        self.entered = 0

    async def fault(self, hook: str) -> None:
        self.entered += 1
        await asyncio.Event().wait()
