"""POST /runs/claim and /runs/{id}/heartbeat over HTTP: leases, fencing, claim replay, bad input."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from service.model.phases import RunPhase
from tests.api.refusals import nothing_changes, refused, send
from tests.api.runs_api import RunsApi, expect, parse_time

LEASE = "X-Lease-Token"


def claim(client: TestClient, status: int = 200, **body: Any) -> dict[str, Any]:
    response = expect(client.post("/runs/claim", json={"worker_id": "w1", **body}), status)
    return response.json() if status == 200 else {}


def test_a_claim_leases_the_oldest_waiting_run_and_shows_the_lease(
    client: TestClient, api: RunsApi
) -> None:
    first = api.create(handler="a")["id"]
    api.create(handler="a")

    got = claim(client, lease_ms=5000)

    assert got["run"]["id"] == first and got["run"]["phase"] == "CREATED"
    lease = got["lease"]
    assert lease["worker_id"] == "w1" and len(lease["token"]) == 32
    shown = api.get(first)["lease"]
    assert shown == {"worker_id": "w1", "expires_at": lease["expires_at"]}  # no token shown
    assert "token" not in shown


def test_no_waiting_run_is_204(client: TestClient, api: RunsApi) -> None:
    api.at(RunPhase.COMPLETED)
    claim(client, status=204)
    claim(client, status=204, handlers=["nobody"])


def test_a_claim_sent_again_with_its_claim_id_gets_the_same_lease(
    client: TestClient, api: RunsApi
) -> None:
    first = api.create()["id"]
    second = api.create()["id"]

    taken = claim(client, claim_id="retry-me")
    again = claim(client, claim_id="retry-me")

    assert again["run"]["id"] == taken["run"]["id"] == first
    assert again["lease"] == taken["lease"]
    assert api.get(second)["lease"] is None
    assert claim(client, claim_id="another")["run"]["id"] == second


def test_lifecycle_moves_on_a_leased_run_need_its_current_token(
    client: TestClient, api: RunsApi
) -> None:
    run_id = api.create()["id"]
    token = claim(client)["lease"]["token"]
    with nothing_changes(api):
        missing = client.post(f"/runs/{run_id}/authorize", json={"decision": "GRANTED"})
        refused(missing, 409, "X-Lease-Token")
        stale = client.post(
            f"/runs/{run_id}/authorize", json={"decision": "GRANTED"}, headers={LEASE: "0" * 32}
        )
        refused(stale, 409, "token")
    moved = client.post(
        f"/runs/{run_id}/authorize", json={"decision": "GRANTED"}, headers={LEASE: token}
    )
    assert expect(moved, 200).json()["phase"] == "AUTHORIZED"
    # operators and domains need no token
    assert api.ack(run_id, "incidents", "create_incident")["late"] is False
    assert api.fail(run_id, "cancelled by an operator")["phase"] == "FAILED"


def test_heartbeat_extends_only_the_holder_s_live_lease(client: TestClient, api: RunsApi) -> None:
    run_id = api.create()["id"]
    lease = claim(client, lease_ms=2000)["lease"]
    path = f"/runs/{run_id}/heartbeat"

    beat = expect(
        client.post(
            path, json={"worker_id": "w1", "lease_ms": 60_000}, headers={LEASE: lease["token"]}
        ),
        200,
    ).json()
    assert parse_time(beat["expires_at"]) > parse_time(lease["expires_at"])
    with nothing_changes(api):
        refused(client.post(path, json={"worker_id": "w2"}), 409, "w2")
        wrong = {"worker_id": "w1", "lease_token": "0" * 32}
        refused(client.post(path, json=wrong), 409, "token")


def test_a_heartbeat_after_the_lease_expired_is_409(client: TestClient, api: RunsApi) -> None:
    run_id = api.create()["id"]
    token = claim(client, lease_ms=1)["lease"]["token"]
    time.sleep(0.05)
    body = {"worker_id": "w1", "lease_token": token}
    refused(client.post(f"/runs/{run_id}/heartbeat", json=body), 409, "expired")


def test_bad_claims_are_422_and_lease_nothing(client: TestClient, api: RunsApi) -> None:
    api.create()
    with nothing_changes(api):
        for body, named in [
            ({}, "worker_id"),
            ({"worker_id": ""}, "worker_id"),
            ({"worker_id": "w", "lease_ms": 0}, "lease_ms"),
            ({"worker_id": "w", "lease_ms": -5}, "lease_ms"),
            ({"worker_id": "w", "lease_ms": "1000"}, "lease_ms"),
            ({"worker_id": "w", "lease_ms": 10**12}, "lease_ms"),
            ({"worker_id": "w", "wait_ms": 60_001}, "wait_ms"),
            ({"worker_id": "w", "handlers": "a"}, "handlers"),
            ({"worker_id": "w", "claim_id": ""}, "claim_id"),
            ({"worker_id": "w", "claim_id": "x" * 101}, "claim_id"),
            ({"worker_id": "w", "colour": "red"}, "colour"),
        ]:
            refused(send(client, "POST", "/runs/claim", body), 422, named)
