"""Domain hooks: concurrent across domains, ordered within one, bounded, failures acked."""

from __future__ import annotations

import asyncio
from typing import Any

from service.domains.faults import Hanging, Raising
from service.domains.incidents import IncidentsDomain
from service.domains.traces import TracesDomain
from service.worker.acks import AckChannel
from service.worker.context import RunContext
from service.worker.dispatch import DomainDispatcher
from service.worker.hooks import Domain
from service.worker.outcome import Outcome
from tests.worker.fakes import FakeAcks, make_context


def dispatch(
    domains: list[Domain], hooks: list[tuple[str, tuple[Any, ...]]], timeout_s: float
) -> tuple[bool, FakeAcks]:
    acks = FakeAcks()
    ctx = make_context()

    async def main() -> bool:
        dispatcher = DomainDispatcher(domains, ctx, acks, timeout_s)
        for hook, args in hooks:
            dispatcher.emit(hook, *args)
        settled = await dispatcher.settle(timeout_s * 4)
        await dispatcher.close()
        return settled

    return asyncio.run(main()), acks


def test_a_raising_domain_acks_what_its_hook_owed_with_the_error() -> None:
    broken = Raising(IncidentsDomain(), message="journal unwritable")
    settled, acks = dispatch([broken], [("on_execution_end", (Outcome.succeeded(),))], 1.0)

    assert settled
    ack = acks.one("incidents", "create_incident")
    assert ack.error is not None
    assert ack.error.startswith(
        "domain incidents failed in on_execution_end: DomainFault: journal unwritable"
    )


def test_a_hanging_domain_is_cut_off_and_does_not_hold_back_the_others() -> None:
    hanging = Hanging(TracesDomain(), hooks=("on_execution_start",))
    settled, acks = dispatch(
        [hanging, IncidentsDomain()],
        [("on_execution_start", ()), ("on_execution_end", (Outcome.succeeded(),))],
        0.1,
    )

    assert settled, "the hung hook was cancelled at its timeout"
    assert hanging.entered == 1
    assert {(a.domain, a.action) for a in acks.sent} == {
        ("logs", "complete_trace"),
        ("incidents", "create_incident"),
    }
    assert all(a.error is None for a in acks.sent)
    assert not any(a.action == "start_trace" for a in acks.sent), "a hang leaves its ack missing"


class Recorder(Domain):
    name = "recorder"

    def __init__(self, start_delay_s: float) -> None:
        self.order: list[str] = []
        self.start_delay_s = start_delay_s

    async def on_execution_start(self, ctx: RunContext, acks: AckChannel) -> None:
        await asyncio.sleep(self.start_delay_s)
        self.order.append("start")

    async def on_execution_end(self, ctx: RunContext, outcome: Outcome, acks: AckChannel) -> None:
        self.order.append("end")


def test_one_domain_s_hooks_run_in_the_order_they_were_emitted() -> None:
    slow_start = Recorder(start_delay_s=0.05)
    dispatch(
        [slow_start],
        [("on_execution_start", ()), ("on_execution_end", (Outcome.succeeded(),))],
        1.0,
    )
    assert slow_start.order == ["start", "end"]
