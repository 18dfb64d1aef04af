"""GET /domains/{domain}/owed: the feed over HTTP, its refusals, its keys and tenants.

How the feed is kept exact and woken is tested under tests/store (test_owed*.py);
here: what a client sees, on both backends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.schemas.owed import OwedOut
from service.authority import Authority
from service.config import Settings
from service.model.phases import RunPhase, utc_now
from tests.api.conftest import GOVERNANCE_TIMEOUT_MS
from tests.api.refusals import nothing_changes, refused
from tests.api.runs_api import RunsApi
from tests.support.server import ServerProcess


def owed(http: Any, domain: str, **query: Any) -> list[dict[str, Any]]:
    answer = http.get(f"/domains/{domain}/owed", params=query)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = OwedOut.model_validate(answer.json()).model_dump(mode="json")
    assert body == answer.json()  # exactly the documented shape
    items: list[dict[str, Any]] = body["items"]
    return items


def test_the_feed_lists_the_owed_runs_oldest_first_and_an_ack_takes_a_pair_off(
    client: TestClient, api: RunsApi
) -> None:
    first = api.at(RunPhase.CREATED, handler="report", tenant_id="acme")
    second = api.at(RunPhase.GOVERNANCE_CHECK)
    api.at(RunPhase.COMPLETED)
    items = owed(client, "logs")
    assert [i["run_id"] for i in items] == [first, second]
    assert items[0] == {
        "run_id": first,
        "tenant_id": "acme",
        "handler": "report",
        "phase": "CREATED",
        "created_at": api.get(first)["created_at"],
        "actions": ["complete_trace", "start_trace"],
    }
    assert [i["run_id"] for i in owed(client, "logs", phase="GOVERNANCE_CHECK")] == [second]

    api.ack(second, "logs", "start_trace")
    assert owed(client, "logs")[1]["actions"] == ["complete_trace"]
    api.ack(second, "logs", "complete_trace")
    assert [i["run_id"] for i in owed(client, "logs")] == [first]

    api.fail(first)
    assert owed(client, "logs") == []
    assert owed(client, "logs", wait_ms=50) == []  # waited, and nothing came


def test_a_long_poll_answers_when_a_run_is_created(server: ServerProcess) -> None:
    """Against a real server: the poll sent first is answered by the run created after it."""
    answers: list[httpx.Response] = []
    sent = threading.Event()

    def poll() -> None:
        hooks = {"request": [lambda _request: sent.set()]}
        with httpx.Client(base_url=server.base_url, timeout=60, event_hooks=hooks) as http:
            answers.append(http.get("/domains/incidents/owed", params={"wait_ms": 30_000}))

    waiting = threading.Thread(target=poll)
    waiting.start()
    assert sent.wait(10)
    with server.client() as http:
        run = RunsApi(http).create()
    waiting.join(40)
    assert not waiting.is_alive(), "the long poll did not answer"
    assert [i["run_id"] for i in answers[0].json()["items"]] == [run["id"]]


@pytest.mark.parametrize(
    ("path", "query", "mentions"),
    [
        ("/domains/incidents/owed", {"limit": 0}, ["limit"]),
        ("/domains/incidents/owed", {"limit": 501}, ["limit", "500"]),
        ("/domains/incidents/owed", {"limit": "ten"}, ["limit"]),
        ("/domains/incidents/owed", {"wait_ms": -1}, ["wait_ms"]),
        ("/domains/incidents/owed", {"wait_ms": 60_001}, ["wait_ms", "60000"]),
        ("/domains/incidents/owed", {"wait_ms": 1.5}, ["wait_ms"]),
        ("/domains/incidents/owed", {"phase": "FINALIZING"}, ["phase", "GOVERNANCE_CHECK"]),
        ("/domains/incidents/owed", {"phase": "created"}, ["phase"]),
        ("/domains/orchestrator/owed", {}, ["orchestrator"]),
        ("/domains/%20incidents/owed", {}, ["domain"]),
        ("/domains/" + "d" * 101 + "/owed", {}, ["domain", "100"]),
    ],
)
def test_a_bad_query_is_a_422_naming_what_is_wrong(
    client: TestClient, api: RunsApi, path: str, query: dict[str, Any], mentions: list[str]
) -> None:
    api.create()
    with nothing_changes(api):
        refused(client.get(path, params=query), 422, *mentions)


# -- keys and tenants --------------------------------------------------------------


@pytest.fixture
def secured(migrated_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=migrated_url, governance_timeout_ms=GOVERNANCE_TIMEOUT_MS)
    with TestClient(create_app(settings), base_url="http://rok.example") as client:
        yield client


def key(client: TestClient, tenant: str, *scopes: str) -> dict[str, str]:
    authority: Authority = client.app.state.authority  # type: ignore[attr-defined]
    _, secret = authority.keys.create(tenant, scopes, "test", utc_now())
    return {"Authorization": f"Bearer {secret}"}


def test_a_key_needs_the_domains_ack_scope(secured: TestClient) -> None:
    writer = key(secured, "acme", "runs:write")
    assert secured.post("/runs", json={"handler": "h"}, headers=writer).status_code == 201
    for scopes in [("runs:read",), ("runs:write", "worker"), ("acks:policies",)]:
        answer = secured.get("/domains/incidents/owed", headers=key(secured, "acme", *scopes))
        refused(answer, 403, "acks:incidents")
    assert secured.get("/domains/incidents/owed").status_code == 401
    for scopes in [("acks:incidents",), ("admin",)]:
        answer = secured.get("/domains/incidents/owed", headers=key(secured, "acme", *scopes))
        assert len(answer.json()["items"]) == 1, scopes


def test_a_tenant_key_sees_only_its_tenants_runs(secured: TestClient) -> None:
    made = {}
    for tenant in ("acme", "globex"):
        headers = key(secured, tenant, "runs:write")
        made[tenant] = secured.post("/runs", json={}, headers=headers).json()["id"]
    for tenant in ("acme", "globex"):
        answer = secured.get(
            "/domains/policies/owed", headers=key(secured, tenant, "acks:policies")
        )
        assert [i["run_id"] for i in answer.json()["items"]] == [made[tenant]]
    admin = secured.get("/domains/policies/owed", headers=key(secured, "ops", "admin"))
    assert {i["run_id"] for i in admin.json()["items"]} == set(made.values())


def test_a_poll_whose_client_hung_up_stops_waiting(server: ServerProcess) -> None:
    """The poll below would wait a minute; the server must still stop at once after the
    client is gone (the fixture fails a server that ignores SIGTERM for 15 s)."""
    with (
        httpx.Client(base_url=server.base_url, timeout=0.5) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.get("/domains/incidents/owed", params={"wait_ms": 60_000})
