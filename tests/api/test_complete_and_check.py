"""execution-complete with `governance_check`: the outcome, the check and finalize in one
request, each still its own move in the history. Both backends."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from service.model.audit import DEFAULT_DOMAIN_EXPECTATIONS

CHECK = {"timeout_ms": 200, "require_all_acks": True, "finalize": True}


def executing_run(client: TestClient, **body: Any) -> str:
    run_id = str(uuid.uuid4())
    created = client.post("/runs", json={"run_id": run_id, "handler": "h", **body})
    assert created.status_code == 201, created.text
    moved = client.post(
        f"/runs/{run_id}/authorize", json={"decision": "GRANTED", "begin_execution": True}
    )
    assert moved.json()["phase"] == "EXECUTING"
    return run_id


def ack_all(client: TestClient, run_id: str) -> None:
    for domain, action in DEFAULT_DOMAIN_EXPECTATIONS:
        answer = client.post(
            f"/runs/{run_id}/acks", json={"domain": domain, "action": action, "result_id": None}
        )
        assert answer.status_code == 201, answer.text


def moves(run: dict[str, Any]) -> list[tuple[str, str]]:
    return [(entry["from"], entry["to"]) for entry in run["history"]]


def test_a_success_with_its_acks_in_ends_completed_in_one_request(client: TestClient) -> None:
    run_id = executing_run(client)
    ack_all(client, run_id)
    answer = client.post(
        f"/runs/{run_id}/execution-complete", json={"success": True, "governance_check": CHECK}
    )
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert run["phase"] == "COMPLETED"
    assert run["governance"]["passed"] is True
    assert moves(run)[-3:] == [
        ("EXECUTING", "GOVERNANCE_CHECK"),
        ("GOVERNANCE_CHECK", "FINALIZING"),
        ("FINALIZING", "COMPLETED"),
    ]
    assert run == client.get(f"/runs/{run_id}").json() | {"reconciliation": run["reconciliation"]}


def test_a_strict_check_missing_acks_fails_the_run_and_still_answers_200(
    client: TestClient,
) -> None:
    run_id = executing_run(client)
    answer = client.post(
        f"/runs/{run_id}/execution-complete",
        json={"success": True, "governance_check": CHECK},
        headers={"Prefer": "return=minimal"},
    )
    assert answer.status_code == 200, answer.text
    state = answer.json()
    assert state["phase"] == "FAILED"
    assert state["execution_success"] is True, "the outcome was recorded before the check"
    assert state["governance"]["passed"] is False
    assert sorted(map(tuple, state["governance"]["reconciliation"]["missing"])) == sorted(
        DEFAULT_DOMAIN_EXPECTATIONS
    )


def test_a_failure_the_retry_policy_retries_is_not_checked(client: TestClient) -> None:
    run_id = executing_run(client, retry={"max_attempts": 2, "backoff_ms": 1000})
    answer = client.post(
        f"/runs/{run_id}/execution-complete",
        json={"success": False, "error": "flaky", "governance_check": CHECK},
    )
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert (run["phase"], run["attempt"], run["governance"]) == ("EXECUTING", 2, None)


def test_a_refused_outcome_checks_nothing(client: TestClient) -> None:
    run_id = executing_run(client)
    ack_all(client, run_id)
    client.post(f"/runs/{run_id}/execution-complete", json={"success": True})
    again = client.post(
        f"/runs/{run_id}/execution-complete", json={"success": True, "governance_check": CHECK}
    )
    assert again.status_code == 409
    run = client.get(f"/runs/{run_id}").json()
    assert run["phase"] == "GOVERNANCE_CHECK" and run["governance"] is None


def test_a_bad_check_is_422_and_moves_nothing(client: TestClient) -> None:
    run_id = executing_run(client)
    answer = client.post(
        f"/runs/{run_id}/execution-complete",
        json={"success": True, "governance_check": {"timeout_ms": 0}},
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"][-2:] == ["governance_check", "timeout_ms"]
    assert client.get(f"/runs/{run_id}").json()["phase"] == "EXECUTING"
