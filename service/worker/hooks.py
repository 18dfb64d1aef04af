"""The domain hook interface: what the WorkerPool calls at a run's lifecycle points.

A domain is a small client of the rok API: it does its job (open an incident,
evaluate a policy, record a trace) and acks what it did through the run's
`AckChannel`. The pool runs each hook in a task of its own with a timeout,
one domain's hooks in order, different domains concurrently; so the
governance check, which waits server-side for the acks, sees them arrive. A
hook that raises gets the pairs it owed acked with its error; a hook that
hangs is cancelled and its acks stay missing. Either way the run goes on.

    class Audit(Domain):
        name = "audit"
        owes = {"on_execution_end": (("audit", "record"),)}

        async def on_execution_end(self, ctx, outcome, acks):
            await acks.send("audit", "record", result_id=store(ctx, outcome))

The interface lives here, with the pool that calls it, so that the worker
depends on no implementation of it: the reference domains (service.domains)
and users' own are plugged in by whoever builds the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from service.worker.acks import AckChannel, Pair
from service.worker.context import Limits, RunContext, Step
from service.worker.outcome import Outcome

HOOKS = ("on_denied", "on_execution_start", "on_step", "on_attempt_failed", "on_execution_end")

GRANTED = "GRANTED"
APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
"""A decision that holds the run for a person's approval instead of denying it."""


@dataclass(frozen=True)
class Decision:
    """What POST /runs/{id}/authorize is told: GRANTED, or any other value to deny."""

    decision: str
    reason: str | None = None

    @property
    def granted(self) -> bool:
        return self.decision == GRANTED


GRANT = Decision(GRANTED)


class Domain:
    """Override the hooks you need; each is called with the run's context."""

    name: str = "domain"
    owes: Mapping[str, tuple[Pair, ...]] = MappingProxyType({})
    """hook name -> the (domain, action) pairs that hook acks: acked with the
    error when the hook raises."""

    async def authorize(self, ctx: RunContext) -> Decision | None:
        """A veto before execution: a non-GRANTED Decision denies the run."""
        return None

    def limits(self, ctx: RunContext) -> Limits | None:
        """Budgets the handler's context enforces while it runs (cost, steps, duration)."""
        return None

    async def on_denied(self, ctx: RunContext, decision: Decision, acks: AckChannel) -> None:
        """The run was denied; it will never execute (awaited before the denial is sent)."""

    async def on_execution_start(self, ctx: RunContext, acks: AckChannel) -> None:
        """The handler is about to run."""

    async def on_step(self, ctx: RunContext, step: Step, acks: AckChannel) -> None:
        """The handler called ctx.step()."""

    async def on_attempt_failed(self, ctx: RunContext, outcome: Outcome) -> None:
        """An attempt failed and the run's retry policy makes the next one (after its
        backoff). Nothing is owed here: the run's evidence is acked once, at its end."""

    async def on_execution_end(self, ctx: RunContext, outcome: Outcome, acks: AckChannel) -> None:
        """Execution ended (or an earlier attempt's outcome, for a resumed run)."""


# The wrappers sit next to the interface because they must forward every hook
# of it: a hook added to Domain and not to them would silently stop at a wrapper.

RunPredicate = Callable[[RunContext], bool]


class Wrapped(Domain):
    """A domain that delegates everything to `inner`; subclasses change one behaviour."""

    def __init__(self, inner: Domain) -> None:
        self.inner = inner
        self.name = inner.name
        self.owes = inner.owes

    async def authorize(self, ctx: RunContext) -> Decision | None:
        return await self.inner.authorize(ctx)

    def limits(self, ctx: RunContext) -> Limits | None:
        return self.inner.limits(ctx)

    async def on_denied(self, ctx: RunContext, decision: Decision, acks: AckChannel) -> None:
        await self.inner.on_denied(ctx, decision, acks)

    async def on_execution_start(self, ctx: RunContext, acks: AckChannel) -> None:
        await self.inner.on_execution_start(ctx, acks)

    async def on_step(self, ctx: RunContext, step: Step, acks: AckChannel) -> None:
        await self.inner.on_step(ctx, step, acks)

    async def on_attempt_failed(self, ctx: RunContext, outcome: Outcome) -> None:
        await self.inner.on_attempt_failed(ctx, outcome)

    async def on_execution_end(self, ctx: RunContext, outcome: Outcome, acks: AckChannel) -> None:
        await self.inner.on_execution_end(ctx, outcome, acks)


class Muted(Wrapped):
    """Never acks the runs `when` selects (it still authorizes and sets limits).

    The demo mutes one domain for one run, so its governance check reports
    the domain's acks missing.
    """

    def __init__(self, inner: Domain, when: RunPredicate) -> None:
        super().__init__(inner)
        self.when = when

    async def on_denied(self, ctx: RunContext, decision: Decision, acks: AckChannel) -> None:
        if not self.when(ctx):
            await self.inner.on_denied(ctx, decision, acks)

    async def on_execution_start(self, ctx: RunContext, acks: AckChannel) -> None:
        if not self.when(ctx):
            await self.inner.on_execution_start(ctx, acks)

    async def on_step(self, ctx: RunContext, step: Step, acks: AckChannel) -> None:
        if not self.when(ctx):
            await self.inner.on_step(ctx, step, acks)

    async def on_execution_end(self, ctx: RunContext, outcome: Outcome, acks: AckChannel) -> None:
        if not self.when(ctx):
            await self.inner.on_execution_end(ctx, outcome, acks)


def muted_by_input(domain: Domain, key: str = "mute_domains") -> Muted:
    """Mute `domain` for runs whose input lists its name under `key`."""

    def selected(ctx: RunContext) -> bool:
        data = ctx.input
        return isinstance(data, dict) and domain.name in (data.get(key) or ())

    return Muted(domain, selected)
