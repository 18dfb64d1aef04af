"""Muted domains never ack the runs they are muted for; they still govern them."""

from __future__ import annotations

import asyncio

from service.domains import IncidentsDomain, PoliciesDomain, PolicySet
from service.worker import Limits, Muted, Outcome, muted_by_input
from tests.worker.fakes import FakeAcks, make_context


def test_muted_by_input_silences_only_the_runs_that_ask_for_it() -> None:
    domain = muted_by_input(IncidentsDomain())
    muted, loud = make_context(input={"mute_domains": ["incidents"]}), make_context(input={})
    acks_muted, acks_loud = FakeAcks(), FakeAcks()
    asyncio.run(domain.on_execution_end(muted, Outcome.succeeded(), acks_muted))
    asyncio.run(domain.on_execution_end(loud, Outcome.succeeded(), acks_loud))
    assert acks_muted.sent == []
    assert len(acks_loud.sent) == 1
    assert domain.name == "incidents" and domain.owes == IncidentsDomain.owes


def test_a_muted_policy_still_denies_and_limits() -> None:
    rules = PolicySet.from_mapping({"kill_switch": True, "defaults": {"max_steps": 3}})
    domain = Muted(PoliciesDomain(rules=rules), lambda ctx: True)
    ctx = make_context()
    veto = asyncio.run(domain.authorize(ctx))
    assert veto is not None and not veto.granted
    assert domain.limits(ctx) == Limits(max_steps=3)
