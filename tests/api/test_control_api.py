"""Run control over HTTP (DESIGN section 11): the endpoints, their answers and their
refusals. The rules themselves are tested in tests/kernel/test_control.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.api.runs_api import RunsApi


def claim(client: TestClient) -> dict[str, Any] | None:
    answer = client.post("/runs/claim", json={"worker_id": "w1", "lease_ms": 30_000})
    if answer.status_code == 204:
        return None
    assert answer.status_code == 200, answer.text
    claimed: dict[str, Any] = answer.json()
    return claimed


def test_cancel_an_executing_run_reaches_its_worker(client: TestClient, api: RunsApi) -> None:
    run_id = api.create(handler="job")["id"]
    claimed = claim(client)
    assert claimed is not None
    token = {"X-Lease-Token": claimed["lease"]["token"]}
    client.post(
        f"/runs/{run_id}/authorize",
        json={"decision": "GRANTED", "begin_execution": True},
        headers=token,
    ).raise_for_status()

    run = api.move(run_id, "cancel", {"reason": "wrong input"})

    assert run["phase"] == "EXECUTING" and run["cancel_requested"] is True
    assert run["cancellation"]["reason"] == "wrong input"
    assert run["history"][-1]["kind"] == "event"
    beat = client.post(
        f"/runs/{run_id}/heartbeat", json={"worker_id": "w1", "lease_ms": 30_000}, headers=token
    )
    assert beat.json()["cancel_requested"] is True
    assert beat.json()["cancel_reason"] == "wrong input"
    refused = client.post(
        f"/runs/{run_id}/execution-complete", json={"success": True}, headers=token
    )
    assert refused.status_code == 409
    assert refused.json()["rule"] == "cancellation" and refused.json()["verdict"] == "reject"
    done = client.post(
        f"/runs/{run_id}/execution-complete",
        json={"success": False, "error": "cancelled: wrong input"},
        headers=token,
    )
    assert done.json()["phase"] == "GOVERNANCE_CHECK"
    api.fail(run_id, "ending the test")


def test_cancel_of_a_queued_run_fails_it_now(api: RunsApi) -> None:
    run_id = api.create(handler="job")["id"]
    run = api.move(run_id, "cancel", {"reason": "not needed"})
    assert run["phase"] == "FAILED" and run["error"] == "cancelled: not needed"
    again = api.move(run_id, "cancel", {"reason": "twice"}, status=409)
    assert "terminal" in again["detail"]


def test_approval_holds_the_run_until_approved(client: TestClient, api: RunsApi) -> None:
    run = api.create(handler="job", requires_approval=True, approval_timeout_ms=60_000)
    assert run["approval"]["state"] == "pending" and run["approval"]["deadline"]
    assert claim(client) is None
    waiting = api.move(run["id"], "authorize", {"decision": "GRANTED"}, status=409)
    assert waiting["verdict"] == "wait" and waiting["rule"] == "approval"

    approved = api.move(run["id"], "approve", {"by": "alice", "reason": "checked"})

    assert approved["approval"]["state"] == "approved"
    assert approved["approval"]["by"] == "alice"
    claimed = claim(client)
    assert claimed is not None and claimed["run"]["id"] == run["id"]
    api.fail(run["id"], "ending the test")


def test_reject_fails_the_run(api: RunsApi) -> None:
    run_id = api.create(handler="job", requires_approval=True)["id"]
    run = api.move(run_id, "reject", {"by": "bob"})
    assert run["phase"] == "FAILED" and run["approval"]["state"] == "rejected"


def test_retry_result_and_schedule_are_declared_and_shown(api: RunsApi) -> None:
    start = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    run = api.create(
        handler="job",
        retry={"max_attempts": 3, "backoff_ms": 500},
        not_before=start,
        queue_timeout_ms=60_000,
    )
    assert run["max_attempts"] == 3
    assert run["retry"] == {"backoff_ms": 500, "multiplier": 2.0, "max_backoff_ms": None}
    assert run["not_before"] and run["queue_deadline"]
    api.fail(run["id"], "ending the test")


def test_the_result_is_stored_and_shown(client: TestClient, api: RunsApi) -> None:
    run_id = _executing(api)
    too_big = client.post(
        f"/runs/{run_id}/execution-complete", json={"success": True, "result": "x" * 300_000}
    )
    assert too_big.status_code == 422 and "ROK_MAX_RESULT_BYTES" in too_big.text
    assert api.get(run_id)["phase"] == "EXECUTING"
    run = api.execution_complete(run_id, True, result={"rows": [1, 2, 3]})
    assert run["result"] == {"rows": [1, 2, 3]}
    assert api.get(run_id)["result"] == {"rows": [1, 2, 3]}
    api.fail(run_id, "ending the test")


def _executing(api: RunsApi) -> str:
    run_id: str = api.create(handler="job")["id"]
    api.authorize(run_id)
    api.begin_execution(run_id)
    return run_id


def test_release_hands_the_run_back(client: TestClient, api: RunsApi) -> None:
    run_id = api.create(handler="job")["id"]
    claimed = claim(client)
    assert claimed is not None
    token = {"X-Lease-Token": claimed["lease"]["token"]}
    released = client.post(f"/runs/{run_id}/release", headers=token)
    assert released.status_code == 200 and released.json()["lease"] is None
    again = claim(client)
    assert again is not None and again["run"]["id"] == run_id
    stale = client.post(f"/runs/{run_id}/release", headers=token)
    assert stale.status_code == 409
    api.fail(run_id, "ending the test")


def test_bad_control_requests_name_what_is_wrong(client: TestClient, api: RunsApi) -> None:
    both = client.post("/runs", json={"max_attempts": 2, "retry": {"max_attempts": 3}})
    assert both.status_code == 422 and "not both" in both.text
    lone = client.post("/runs", json={"approval_timeout_ms": 1000})
    assert lone.status_code == 422 and "requires_approval" in lone.text
    naive = client.post("/runs", json={"not_before": "2030-01-01T00:00:00"})
    assert naive.status_code == 422 and "not_before" in naive.text
    backoff = client.post("/runs", json={"retry": {"max_attempts": 2, "multiplier": 0.5}})
    assert backoff.status_code == 422 and "multiplier" in backoff.text
    assert api.total() == 0  # nothing was created by a refused request
    run_id = api.create(handler="job")["id"]
    empty = client.post(f"/runs/{run_id}/cancel", json={"reason": ""})
    assert empty.status_code == 422 and "reason" in empty.text
    needless = client.post(f"/runs/{run_id}/approve", json={})
    assert needless.status_code == 409 and "needs no approval" in needless.text
    assert api.get(run_id)["phase"] == "CREATED"
    api.fail(run_id, "ending the test")
