"""PUT /limits/{key}, GET /limits and concurrency_keys on runs, over HTTP, both backends.

(tests/api/test_limits.py is about body and rate limits; this file is concurrency.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.authority import Authority
from service.config import Settings
from service.model.phases import utc_now
from tests.api.conftest import GOVERNANCE_TIMEOUT_MS


def limits(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer = client.get("/limits", headers=headers or {})
    assert answer.status_code == 200, answer.text
    return {item["key"]: item for item in answer.json()["items"]}


def claim(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any] | None:
    answer = client.post("/runs/claim", json={"worker_id": "w"}, headers=headers or {})
    if answer.status_code == 204:
        return None
    assert answer.status_code == 200, answer.text
    claimed: dict[str, Any] = answer.json()
    return claimed


def test_a_run_lists_its_keys_and_a_claim_holds_them_until_it_ends(client: TestClient) -> None:
    put = client.put("/limits/gpu", json={"max_concurrent": 1})
    assert put.status_code == 200, put.text
    assert put.json() == {"key": "gpu", "max_concurrent": 1, "effective_max": 1, "in_use": 0}
    first = client.post("/runs", json={"handler": "h", "concurrency_keys": ["gpu", "eu-1"]})
    assert first.status_code == 201, first.text
    assert first.json()["concurrency_keys"] == ["gpu", "eu-1"]
    second = client.post("/runs", json={"handler": "h", "concurrency_keys": ["gpu"]}).json()
    assert client.get(f"/runs/{second['id']}").json()["concurrency_keys"] == ["gpu"]

    taken = claim(client)
    assert taken is not None and taken["run"]["id"] == first.json()["id"]
    assert claim(client) is None  # gpu is full
    usage = limits(client)
    assert (usage["gpu"]["in_use"], usage["eu-1"]["in_use"], usage["tenant:"]["in_use"]) == (
        1,
        1,
        1,
    )
    assert usage["eu-1"]["max_concurrent"] is None and usage["eu-1"]["effective_max"] is None

    token = {"X-Lease-Token": taken["lease"]["token"]}
    failed = client.post(f"/runs/{taken['run']['id']}/fail", json={"error": "x"}, headers=token)
    assert failed.status_code == 200, failed.text
    assert {k: v["in_use"] for k, v in limits(client).items()} == {
        "gpu": 0,
        "eu-1": 0,
        "tenant:": 0,
    }
    again = claim(client)
    assert again is not None and again["run"]["id"] == second["id"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"concurrency_keys": [f"k{i}" for i in range(9)]}, "concurrency_keys"),
        ({"concurrency_keys": ["has space"]}, "is not a key"),
        ({"concurrency_keys": ["ok", "ok"]}, "listed twice"),
        ({"concurrency_keys": ["tenant:other"]}, "the tenants' own"),
        ({"concurrency_keys": [7]}, "concurrency_keys"),
        ({"concurrency_keys": "gpu"}, "concurrency_keys"),
    ],
)
def test_bad_keys_on_a_run_are_a_422_and_create_nothing(
    client: TestClient, body: dict[str, Any], where: str
) -> None:
    answer = client.post("/runs", json={"handler": "h", **body})
    assert answer.status_code == 422, answer.text
    assert where in answer.text
    assert client.get("/runs").json()["items"] == []
    assert limits(client) == {}


@pytest.mark.parametrize(
    ("key", "body", "where"),
    [
        ("gpu", {"max_concurrent": -1}, "max_concurrent"),
        ("gpu", {"max_concurrent": 1.5}, "max_concurrent"),
        ("gpu", {"max_concurrent": 2_000_000}, "max_concurrent"),
        ("gpu", {}, "max_concurrent"),
        ("gpu", {"max_concurrent": 1, "limit": 2}, "limit"),  # an unknown field
        ("bad key", {"max_concurrent": 1}, "is not a key"),
        # a line break, sent encoded: found by the fuzzer, once answered by no route (404)
        ("line%0Abreak", {"max_concurrent": 1}, "is not a key"),
        ("tenant:", {"max_concurrent": 1}, "tenant:<tenant_id>"),
        ("x" * 101, {"max_concurrent": 1}, "is not a key"),
    ],
)
def test_bad_limits_are_a_422_and_change_nothing(
    client: TestClient, key: str, body: dict[str, Any], where: str
) -> None:
    assert client.put("/limits/gpu", json={"max_concurrent": 3}).status_code == 200
    answer = client.put(f"/limits/{key}", json=body)
    assert answer.status_code == 422, answer.text
    assert where in answer.text
    assert limits(client) == {
        "gpu": {"key": "gpu", "max_concurrent": 3, "effective_max": 3, "in_use": 0}
    }


def test_a_key_with_a_slash_is_a_key(client: TestClient) -> None:
    answer = client.put("/limits/region/eu", json={"max_concurrent": 2})
    assert answer.status_code == 200, answer.text
    assert limits(client)["region/eu"]["max_concurrent"] == 2


# -- with keys: who may set and read limits ---------------------------------------


@pytest.fixture
def secured(migrated_url: str) -> Iterator[TestClient]:
    settings = Settings(
        database_url=migrated_url, governance_timeout_ms=GOVERNANCE_TIMEOUT_MS, tenant_concurrency=1
    )
    with TestClient(create_app(settings), base_url="http://rok.example") as client:
        yield client


NewKey = Callable[..., dict[str, str]]


@pytest.fixture
def new_key(secured: TestClient) -> NewKey:
    def make(tenant: str, *scopes: str) -> dict[str, str]:
        authority: Authority = secured.app.state.authority  # type: ignore[attr-defined]
        _, secret = authority.keys.create(tenant, scopes, "test", utc_now())
        return {"Authorization": f"Bearer {secret}"}

    return make


def test_only_an_admin_sets_a_limit_and_a_tenant_reads_its_own(
    secured: TestClient, new_key: NewKey
) -> None:
    admin = new_key("ops", "admin")
    acme = new_key("acme", "runs:read", "runs:write", "worker")
    refused = secured.put("/limits/tenant:acme", json={"max_concurrent": 50}, headers=acme)
    assert refused.status_code == 403, refused.text
    assert "admin" in refused.json()["detail"]

    for _ in range(3):
        assert secured.post("/runs", json={"handler": "h"}, headers=acme).status_code == 201
    assert secured.post("/runs", json={"handler": "h", "tenant_id": "other"}, headers=admin)
    assert claim(secured, acme) is not None
    assert claim(secured, acme) is None  # ROK_TENANT_CONCURRENCY=1
    assert limits(secured, acme) == {
        "tenant:acme": {"key": "tenant:acme", "max_concurrent": None, "effective_max": 1,
                        "in_use": 1}
    }  # fmt: skip

    put = secured.put("/limits/tenant:acme", json={"max_concurrent": 2}, headers=admin)
    assert put.status_code == 200, put.text
    assert claim(secured, acme) is not None
    assert set(limits(secured, admin)) == {"tenant:acme", "tenant:other"}
