"""Incidents: every run is looked at; what went wrong opens one record."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from service.domains.incidents import IncidentsDomain
from service.worker import Decision, Outcome, OutcomeKind
from tests.worker.fakes import FakeAcks, make_context


def test_a_clean_run_is_acked_with_no_incident() -> None:
    domain = IncidentsDomain()
    acks = FakeAcks()
    asyncio.run(domain.on_execution_end(make_context(), Outcome.succeeded(), acks))
    ack = acks.one("incidents", "create_incident")
    assert ack.result_id is None and ack.error is None
    assert list(domain.opened) == []


@pytest.mark.parametrize(
    "kind",
    [OutcomeKind.HANDLER_ERROR, OutcomeKind.TIMEOUT, OutcomeKind.POLICY_VIOLATION],
)
def test_a_failed_run_opens_an_incident_of_its_kind(kind: OutcomeKind, tmp_path: Path) -> None:
    journal = tmp_path / "incidents.jsonl"
    domain = IncidentsDomain(journal=journal)
    acks = FakeAcks()
    error = "first line of what happened\ntraceback (innermost last):\n  x.py:1 in f"
    asyncio.run(domain.on_execution_end(make_context("agent"), Outcome(kind, error), acks))

    ack = acks.one("incidents", "create_incident")
    assert ack.result_id is not None and ack.result_id.startswith("inc-")
    assert ack.details is not None
    assert ack.details["kind"] == kind.value
    assert ack.details["summary"] == "first line of what happened"
    assert ack.details["handler"] == "agent" and ack.details["error"] == error
    [line] = journal.read_text().splitlines()
    assert json.loads(line)["incident_id"] == ack.result_id
    assert domain.opened[0]["run_id"] == "run-1"


def test_a_denied_run_opens_a_denied_incident() -> None:
    acks = FakeAcks()
    decision = Decision("DENIED_BY_POLICY", "kill switch on")
    asyncio.run(IncidentsDomain().on_denied(make_context("legacy"), decision, acks))
    details = acks.one("incidents", "create_incident").details
    assert details is not None and details["kind"] == "denied" and details["severity"] == "low"
    assert details["summary"] == "run of 'legacy' denied (DENIED_BY_POLICY: kill switch on)"
