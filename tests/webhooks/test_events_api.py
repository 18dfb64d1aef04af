"""GET /events and the service's own deliverer, on both backends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.authority import Authority
from service.config import Settings
from service.model.phases import utc_now
from tests.api.conftest import GOVERNANCE_TIMEOUT_MS, LOCAL_BASE_URL
from tests.webhooks.receiver import SECRET, SECRET_KEY, Receiver

WAIT_S = 30.0  # a bound on a wait for an event, never an assertion on time


def hooked_settings(url: str, receiver: Receiver, **fields: Any) -> Settings:
    return Settings(
        database_url=url,
        governance_timeout_ms=GOVERNANCE_TIMEOUT_MS,
        webhook_urls=(receiver.url,),
        webhook_secret=SECRET_KEY,
        **fields,
    )


@pytest.fixture
def quiet(migrated_url: str, receiver: Receiver) -> Iterator[TestClient]:
    """Auth off, webhooks on, no background loops: events stay pending."""
    settings = hooked_settings(migrated_url, receiver, auth="off")
    with TestClient(create_app(settings, sweep=False), base_url=LOCAL_BASE_URL) as client:
        yield client


def failed_run(client: TestClient, headers: dict[str, str] | None = None, **body: Any) -> str:
    created = client.post("/runs", json={"handler": "job", **body}, headers=headers)
    assert created.status_code == 201, created.text
    run_id: str = created.json()["id"]
    failed = client.post(f"/runs/{run_id}/fail", json={"error": "boom"}, headers=headers)
    assert failed.status_code == 200, failed.text
    return run_id


def events(client: TestClient, headers: dict[str, str] | None = None, **query: Any) -> Any:
    answer = client.get("/events", params=query, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_service_delivers_a_failed_run_after_the_commit(
    migrated_url: str, receiver: Receiver
) -> None:
    settings = hooked_settings(migrated_url, receiver, auth="off")
    with TestClient(create_app(settings), base_url=LOCAL_BASE_URL) as client:
        run_id = failed_run(client, tenant_id="acme")

        # woken by the commit: no retry interval to wait out
        assert receiver.arrived.wait(WAIT_S)
        [delivery] = receiver.deliveries
        payload = delivery.verified()
        assert payload["type"] == "run.failed" and payload["data"]["run_id"] == run_id

        deadline = time.monotonic() + WAIT_S
        while (item := events(client)["items"][0])["state"] == "pending":
            assert time.monotonic() < deadline, item
            time.sleep(0.05)
        assert item["state"] == "delivered" and item["attempts"] == 1
        assert item["id"] == delivery.headers["webhook-id"]
        assert item["body"] == payload
        assert item["tenant_id"] == "acme" and item["run_id"] == run_id


def test_events_list_newest_first_with_filters_and_pages(quiet: TestClient) -> None:
    runs = [failed_run(quiet) for _ in range(3)]

    page = events(quiet, limit=2)
    rest = events(quiet, limit=2, cursor=page["next_cursor"])

    assert [e["run_id"] for e in page["items"] + rest["items"]] == runs[::-1]
    assert rest["next_cursor"] is None
    first = page["items"][0]
    assert first["type"] == "run.failed" and first["state"] == "pending"
    assert first["attempts"] == 0 and first["next_attempt_at"] is not None
    assert first["last_error"] is None and first["delivered_at"] is None
    assert first["body"]["data"]["error"] == "boom"
    assert len(events(quiet, type="run.failed", state="pending")["items"]) == 3
    assert events(quiet, state="delivered")["items"] == []
    assert events(quiet, type="run.stale")["items"] == []
    assert [e["run_id"] for e in events(quiet, run_id=runs[1])["items"]] == [runs[1]]


@pytest.mark.parametrize(
    "query",
    [{"type": "run.exploded"}, {"state": "lost"}, {"cursor": "nope"}, {"limit": 0}],
)
def test_a_bad_query_is_422_and_names_it(quiet: TestClient, query: dict[str, Any]) -> None:
    failed_run(quiet)
    answer = quiet.get("/events", params=query)
    assert answer.status_code == 422, answer.text
    assert next(iter(query)) in answer.text


def test_no_event_carries_a_secret(quiet: TestClient) -> None:
    failed_run(quiet)
    text = quiet.get("/events").text
    assert SECRET.removeprefix("whsec_") not in text
    assert "127.0.0.1:" not in text  # no endpoint URL either


@pytest.fixture
def secured(migrated_url: str, receiver: Receiver) -> Iterator[TestClient]:
    settings = hooked_settings(migrated_url, receiver)
    assert settings.auth_required
    with TestClient(create_app(settings, sweep=False), base_url="http://rok.example") as client:
        yield client


def key(client: TestClient, tenant: str, *scopes: str) -> dict[str, str]:
    authority: Authority = client.app.state.authority  # type: ignore[attr-defined]
    _, secret = authority.keys.create(tenant, scopes, "test", utc_now())
    return {"Authorization": f"Bearer {secret}"}


def test_a_tenant_key_sees_its_own_events_and_an_admin_key_every_one(
    secured: TestClient,
) -> None:
    admin = key(secured, "ops", "admin")
    acme_run = failed_run(secured, admin, tenant_id="acme")
    other_run = failed_run(secured, admin, tenant_id="other")
    acme = key(secured, "acme", "runs:read")

    assert [e["run_id"] for e in events(secured, acme)["items"]] == [acme_run]
    assert [e["run_id"] for e in events(secured, admin)["items"]] == [other_run, acme_run]
    assert [e["run_id"] for e in events(secured, admin, tenant_id="other")["items"]] == [other_run]
    assert secured.get("/events", params={"tenant_id": "other"}, headers=acme).status_code == 403
    assert secured.get("/events").status_code == 401
    assert secured.get("/events", headers=key(secured, "acme", "worker")).status_code == 403
