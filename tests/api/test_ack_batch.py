"""POST /runs/{id}/acks/batch: several acks in one transaction, all or none."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from service.kernel.spec import MAX_ACK_BATCH
from service.model.phases import RunPhase
from tests.api.refusals import nothing_changes, refused, send
from tests.api.runs_api import (
    DOMAIN_PAIRS,
    UNKNOWN_RUN,
    RunsApi,
    WaitingCheck,
    expect,
    finalize_run_acks,
    parse_time,
)
from tests.support.server import ServerProcess


def batch(
    client: TestClient, run_id: str, acks: list[dict[str, Any]], status: int = 201
) -> dict[str, Any]:
    response = client.post(f"/runs/{run_id}/acks/batch", json={"acks": acks})
    result: dict[str, Any] = expect(response, status).json()
    return result


def every_domain_ack(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"domain": e["domain"], "action": e["action"], "result_id": f"{e['action']}-1"}
        for e in run["expectations"]
        if e["domain"] != "orchestrator"
    ]


def test_a_batch_records_every_ack_in_order_and_the_check_passes(
    client: TestClient, api: RunsApi
) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    sent = every_domain_ack(api.get(run_id))
    sent[0]["details"] = {"incident": None, "why": "clean run"}

    recorded = batch(client, run_id, sent)["acks"]

    assert [(a["domain"], a["action"], a["result_id"]) for a in recorded] == [
        (a["domain"], a["action"], a["result_id"]) for a in sent
    ]
    assert recorded[0]["details"] == {"incident": None, "why": "clean run"}
    assert len({a["at"] for a in recorded}) == 1  # one transaction, one moment
    assert not any(a["late"] for a in recorded)
    run = api.get(run_id)
    assert run["acks"] == recorded
    check = api.governance_check(run_id, timeout_ms=1, require_all_acks=True)
    assert check["passed"] is True
    assert check["reconciliation"]["missing"] == []


def test_a_batch_wakes_a_waiting_check(server: ServerProcess) -> None:
    with server.client() as http:
        api = RunsApi(http)
        run_id = api.at(RunPhase.GOVERNANCE_CHECK)
        with WaitingCheck(server.base_url, run_id) as check:
            time.sleep(0.1)
            assert not check.answered
            acks = [{"domain": d, "action": a} for d, a in DOMAIN_PAIRS]
            response = http.post(f"/runs/{run_id}/acks/batch", json={"acks": acks})
            recorded = expect(response, 201).json()["acks"]
            result = check.answer()
        assert result["passed"] is True
        checked_at = result["run"]["governance"]["checked_at"]
        assert parse_time(checked_at) >= parse_time(recorded[-1]["at"])


def test_a_duplicate_inside_a_batch_is_drift_like_two_single_acks(
    client: TestClient, api: RunsApi
) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    twice = {"domain": "incidents", "action": "create_incident"}
    batch(client, run_id, [twice, twice])
    run = api.get(run_id)
    assert run["reconciliation"]["drift"] == [["incidents", "create_incident"]]


def test_a_batch_for_a_terminal_run_is_all_late_and_changes_nothing_else(
    client: TestClient, api: RunsApi
) -> None:
    run_id = api.at(RunPhase.COMPLETED)
    before = api.get(run_id)

    recorded = batch(client, run_id, [{"domain": "search", "action": "index"}] * 2)["acks"]

    assert [a["late"] for a in recorded] == [True, True]
    after = api.get(run_id)
    for field in before:
        if field not in ("acks", "reconciliation"):
            assert after[field] == before[field], field
    assert finalize_run_acks(after) == 1


def test_bad_batches_are_refused_and_store_nothing(client: TestClient, api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    good = {"domain": "incidents", "action": "create_incident"}
    path = f"/runs/{run_id}/acks/batch"
    with nothing_changes(api):
        refused(send(client, "POST", path, {"acks": []}), 422, "acks")
        refused(send(client, "POST", path, {"acks": [good] * (MAX_ACK_BATCH + 1)}), 422, "acks")
        refused(send(client, "POST", path, {}), 422, "acks")
        refused(send(client, "POST", path, {"acks": [good], "extra": 1}), 422, "extra")
        # one bad ack refuses the whole batch: the good one before it is not stored
        for bad, names in [
            ({"domain": "orchestrator", "action": "finalize_run"}, "orchestrator"),
            ({"domain": " ", "action": "x"}, "domain"),
            ({"domain": "a", "action": "b", "colour": "red"}, "colour"),
            ({"domain": "a", "action": "b", "details": {"x": "a\x00b"}}, "NUL"),
        ]:
            refused(send(client, "POST", path, {"acks": [good, bad]}), 422, names)


def test_a_batch_for_an_unknown_run_is_404(client: TestClient, api: RunsApi) -> None:
    api.create()
    with nothing_changes(api):
        body = {"acks": [{"domain": "incidents", "action": "create_incident"}]}
        refused(send(client, "POST", f"/runs/{UNKNOWN_RUN}/acks/batch", body), 404, UNKNOWN_RUN)


def test_the_default_contract_in_one_batch(client: TestClient, api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    batch(client, run_id, [{"domain": d, "action": a} for d, a in DOMAIN_PAIRS])
    assert api.get(run_id)["reconciliation"]["missing"] == []
