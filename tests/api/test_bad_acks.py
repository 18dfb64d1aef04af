"""Invariant 5, acks: malformed ones are refused; late and duplicate ones are kept as
drift and change nothing else."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from service.model.phases import RunPhase
from tests.api.refusals import nothing_changes, refused, send
from tests.api.runs_api import DOMAIN_PAIRS, UNKNOWN_RUN, RunsApi, finalize_run_acks, pairs

BLANKS = ["", " ", "\t", "\n", " incidents", "incidents ", "incidents\n", "\u00a0"]


def statuses(run: dict[str, Any]) -> list[str]:
    return [e["status"] for e in run["expectations"]]


def test_ack_with_empty_or_whitespace_names_is_422(client: TestClient, api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    with nothing_changes(api):
        for field in ("domain", "action"):
            for blank in BLANKS:
                body = {"domain": "incidents", "action": "create_incident", field: blank}
                response = send(client, "POST", f"/runs/{run_id}/acks", body)
                refused(response, 422, field)


def test_ack_for_an_unknown_run_is_404(client: TestClient, api: RunsApi) -> None:
    api.create()
    with nothing_changes(api):
        body = {"domain": "incidents", "action": "create_incident"}
        refused(send(client, "POST", f"/runs/{UNKNOWN_RUN}/acks", body), 404, UNKNOWN_RUN)


def test_ack_on_the_orchestrator_domain_is_422(client: TestClient, api: RunsApi) -> None:
    live = api.at(RunPhase.GOVERNANCE_CHECK, checked=True)
    terminal = api.at(RunPhase.COMPLETED)
    with nothing_changes(api):
        for run_id in (live, terminal):
            for action in ("finalize_run", "anything"):
                body = {"domain": "orchestrator", "action": action}
                refused(send(client, "POST", f"/runs/{run_id}/acks", body), 422, "orchestrator")


def test_ack_for_a_terminal_run_is_kept_as_late_drift_and_changes_nothing_else(
    api: RunsApi,
) -> None:
    run_id = api.at(RunPhase.COMPLETED)
    before = api.get(run_id)
    late = [
        api.ack(run_id, "incidents", "create_incident", result_id="inc-late"),
        api.ack(run_id, "search", "index"),
    ]
    assert [a["late"] for a in late] == [True, True]
    after = api.get(run_id)
    # (`incidents` lists incident acks, late ones too: an incident opened late still exists)
    for field in before:
        if field not in ("acks", "reconciliation", "incidents"):
            assert after[field] == before[field], field
    assert after["acks"][: len(before["acks"])] == before["acks"]
    assert [(a["domain"], a["action"], a["late"]) for a in after["acks"][-2:]] == [
        ("incidents", "create_incident", True),
        ("search", "index", True),
    ]
    assert after["reconciliation"]["drift"] == [
        ["incidents", "create_incident"],
        ["search", "index"],
    ]
    assert after["reconciliation"]["status"] == "INCOMPLETE"
    assert finalize_run_acks(after) == 1


def test_a_late_ack_never_counts_as_evidence(api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    failed = api.governance_check(run_id, timeout_ms=1, require_all_acks=True)["run"]
    assert failed["phase"] == "FAILED"
    api.ack(run_id, "incidents", "create_incident")
    after = api.get(run_id)
    assert {k: v for k, v in after.items() if k not in ("acks", "reconciliation")} == {
        k: v for k, v in failed.items() if k not in ("acks", "reconciliation")
    }
    assert statuses(after) == statuses(failed)
    assert ["incidents", "create_incident"] in after["reconciliation"]["missing"]
    assert ["incidents", "create_incident"] in after["reconciliation"]["drift"]


def test_duplicate_ack_is_recorded_and_reported_as_drift(api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    first = api.ack(run_id, "incidents", "create_incident")
    second = api.ack(run_id, "incidents", "create_incident")
    assert first["late"] is second["late"] is False
    run = api.get(run_id)
    assert pairs(run["acks"]) == [("incidents", "create_incident")] * 2
    assert run["reconciliation"]["drift"] == [["incidents", "create_incident"]]
    assert run["phase"] == "GOVERNANCE_CHECK"
    for domain, action in DOMAIN_PAIRS[1:]:
        api.ack(run_id, domain, action)
    # drift is reported, not blocking
    check = api.governance_check(run_id, timeout_ms=1)
    assert check["passed"] is True
    assert check["reconciliation"]["drift"] == [["incidents", "create_incident"]]
