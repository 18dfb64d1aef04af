"""Authorization: the domains' vetoes first, then the authorizer; no answer denies."""

from __future__ import annotations

import asyncio

from service.domains import PoliciesDomain, PolicySet
from service.worker.authorizer import AUTHORIZER_FAILED, decide
from service.worker.context import RunContext
from service.worker.hooks import GRANT, Decision, Domain
from tests.worker.fakes import make_context


def decide_now(domains: list[Domain], authorizer: object, timeout_s: float = 1.0) -> Decision:
    return asyncio.run(decide(make_context("report"), domains, authorizer, timeout_s))  # type: ignore[arg-type]


def test_grant_by_default_and_the_policies_veto_first() -> None:
    consulted: list[str] = []

    def authorizer(ctx: RunContext) -> Decision:
        consulted.append(ctx.handler)
        return GRANT

    assert decide_now([], authorizer).granted
    switched_off = PoliciesDomain(rules=PolicySet.from_mapping({"kill_switch": True}))
    denied = decide_now([switched_off], authorizer)
    assert denied.decision == "DENIED_BY_POLICY"
    assert denied.reason == "the global kill switch is on"
    assert consulted == ["report"], "the authorizer is not asked once a policy denied"


def test_an_async_authorizer_is_awaited() -> None:
    async def reviewer(ctx: RunContext) -> Decision:
        await asyncio.sleep(0)
        return Decision("DENIED_BY_REVIEWER", "weekend")

    assert decide_now([], reviewer) == Decision("DENIED_BY_REVIEWER", "weekend")


def test_an_authorizer_that_raises_hangs_or_answers_nonsense_denies() -> None:
    def raises(ctx: RunContext) -> Decision:
        raise ConnectionError("policy server down")

    async def hangs(ctx: RunContext) -> Decision:
        await asyncio.sleep(10)
        return GRANT

    for authorizer in (raises, hangs, lambda ctx: "yes"):
        decision = decide_now([], authorizer, timeout_s=0.05)
        assert decision.decision == AUTHORIZER_FAILED, authorizer
        assert not decision.granted


class BrokenVeto(Domain):
    name = "broken"

    async def authorize(self, ctx: RunContext) -> Decision | None:
        raise RuntimeError("rules unreadable")


def test_a_domain_that_cannot_decide_denies() -> None:
    decision = decide_now([BrokenVeto()], lambda ctx: GRANT)
    assert decision.decision == AUTHORIZER_FAILED
    assert "domain broken could not decide" in (decision.reason or "")
