"""Keys, scopes and tenants (DESIGN section 9), on both backends.

401 for no key or an unknown or revoked one; 403 for a key without the scope;
404 for a run of another tenant; `actor` on every record a key makes.
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
from service.store.keys import KeyStore
from tests.api.conftest import GOVERNANCE_TIMEOUT_MS

NewKey = Callable[..., dict[str, str]]


@pytest.fixture
def secured(migrated_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=migrated_url, governance_timeout_ms=GOVERNANCE_TIMEOUT_MS)
    assert settings.auth_required, "keys are required by default"
    with TestClient(create_app(settings), base_url="http://rok.example") as client:
        yield client


@pytest.fixture
def new_key(secured: TestClient) -> NewKey:
    """Headers carrying a new key of `tenant` with `scopes`."""

    def make(tenant: str = "acme", *scopes: str) -> dict[str, str]:
        authority: Authority = secured.app.state.authority  # type: ignore[attr-defined]
        _, secret = authority.keys.create(tenant, scopes or ("admin",), "test", utc_now())
        return {"Authorization": f"Bearer {secret}"}

    return make


def create(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    answer = client.post("/runs", json={"handler": "h", **body}, headers=headers)
    assert answer.status_code == 201, answer.text
    run: dict[str, Any] = answer.json()
    return run


def test_no_key_is_401_with_a_bearer_challenge(secured: TestClient) -> None:
    for method, path in [("GET", "/runs"), ("POST", "/runs"), ("POST", "/runs/claim")]:
        answer = secured.request(method, path, json={})
        assert answer.status_code == 401, (method, path)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in answer.json()["detail"]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer rok_0123456789abcdef_" + "x" * 43,  # well-formed, unknown
        "Bearer not-a-key",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
    ],
)
def test_an_unknown_or_malformed_key_is_401(secured: TestClient, header: str) -> None:
    answer = secured.get("/runs", headers={"Authorization": header})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_health_and_docs_need_no_key(secured: TestClient) -> None:
    for path in ("/healthz", "/openapi.json", "/docs", "/redoc"):
        assert secured.get(path).status_code == 200, path


def test_a_revoked_key_is_refused_on_the_next_request(secured: TestClient, new_key: NewKey) -> None:
    headers = new_key("acme", "runs:read")
    assert secured.get("/runs", headers=headers).status_code == 200
    authority: Authority = secured.app.state.authority  # type: ignore[attr-defined]
    (key,) = authority.keys.list()
    authority.keys.revoke(key.id, utc_now())
    assert secured.get("/runs", headers=headers).status_code == 401


def test_a_key_revoked_elsewhere_is_refused_within_rok_key_cache_ms(
    migrated_url: str,
) -> None:
    """`rok keys revoke` runs in another process: with ROK_KEY_CACHE_MS=0 the very next
    request is refused (the default, 1000 ms, believes a key that long; tests/store)."""
    settings = Settings(database_url=migrated_url, key_cache_ms=0)
    with TestClient(create_app(settings), base_url="http://rok.example") as client:
        authority: Authority = client.app.state.authority  # type: ignore[attr-defined]
        key, secret = authority.keys.create("acme", ["runs:read"], "k", utc_now())
        headers = {"Authorization": f"Bearer {secret}"}
        assert client.get("/runs", headers=headers).status_code == 200
        elsewhere = KeyStore(authority.database)
        elsewhere.revoke(key.id, utc_now())
        assert client.get("/runs", headers=headers).status_code == 401


def test_a_wrong_secret_for_a_real_key_id_is_401(secured: TestClient, new_key: NewKey) -> None:
    headers = new_key("acme", "runs:read")
    forged = headers["Authorization"][:-4] + "AAAA"
    assert secured.get("/runs", headers={"Authorization": forged}).status_code == 401


def test_a_key_without_the_scope_is_403_and_changes_nothing(
    secured: TestClient, new_key: NewKey
) -> None:
    reader = new_key("acme", "runs:read")
    answer = secured.post("/runs", json={"handler": "h"}, headers=reader)
    assert answer.status_code == 403
    assert "runs:write" in answer.json()["detail"]
    assert secured.get("/runs", headers=reader).json()["items"] == []


def test_runs_of_another_tenant_do_not_exist_for_a_key(
    secured: TestClient, new_key: NewKey
) -> None:
    acme = new_key("acme", "runs:read", "runs:write")
    globex = new_key("globex", "runs:read", "runs:write")
    run = create(secured, acme)
    assert run["tenant_id"] == "acme"
    for path in (f"/runs/{run['id']}", f"/runs/{run['id']}/reconciliation"):
        assert secured.get(path, headers=globex).status_code == 404, path
        assert secured.get(path, headers=acme).status_code == 200, path
    moved = secured.post(f"/runs/{run['id']}/fail", json={"error": "x"}, headers=globex)
    assert moved.status_code == 404
    assert secured.get("/runs", headers=globex).json()["items"] == []
    assert [r["id"] for r in secured.get("/runs", headers=acme).json()["items"]] == [run["id"]]
    # the run is as acme left it
    assert secured.get(f"/runs/{run['id']}", headers=acme).json()["phase"] == "CREATED"


def test_a_body_tenant_must_be_the_keys_unless_admin(secured: TestClient, new_key: NewKey) -> None:
    acme = new_key("acme", "runs:write", "runs:read")
    refused = secured.post("/runs", json={"tenant_id": "globex"}, headers=acme)
    assert refused.status_code == 403
    assert "globex" in refused.json()["detail"]
    listed = secured.get("/runs", params={"tenant_id": "globex"}, headers=acme)
    assert listed.status_code == 403
    admin = new_key("ops", "admin")
    run = create(secured, admin, tenant_id="globex")
    assert run["tenant_id"] == "globex"
    assert secured.get(f"/runs/{run['id']}", headers=admin).status_code == 200


def test_every_record_carries_the_actor_that_made_it(secured: TestClient, new_key: NewKey) -> None:
    writer = new_key("acme", "runs:write", "runs:read")
    incidents = new_key("acme", "acks:incidents")
    run = create(secured, writer)
    secured.post(f"/runs/{run['id']}/authorize", json={"decision": "GRANTED"}, headers=writer)
    acked = secured.post(
        f"/runs/{run['id']}/acks",
        json={"domain": "incidents", "action": "create_incident", "result_id": None},
        headers=incidents,
    )
    assert acked.status_code == 201
    shown = secured.get(f"/runs/{run['id']}", headers=writer).json()
    writer_id = shown["created_by"]
    assert writer_id is not None
    assert shown["history"][0]["actor"] == writer_id
    assert shown["acks"][0]["actor"] not in (None, writer_id)
    assert acked.json()["actor"] == shown["acks"][0]["actor"]


def test_only_the_domains_key_gives_its_evidence(secured: TestClient, new_key: NewKey) -> None:
    writer = new_key("acme", "runs:write", "runs:read")
    logs = new_key("acme", "acks:logs")
    run = create(secured, writer)
    for headers in (writer, logs):
        forged = secured.post(
            f"/runs/{run['id']}/acks",
            json={"domain": "policies", "action": "evaluate_policy", "result_id": "eval-1"},
            headers=headers,
        )
        assert forged.status_code == 403
        assert "acks:policies" in forged.json()["detail"]
    batch = secured.post(
        f"/runs/{run['id']}/acks/batch",
        json={
            "acks": [
                {"domain": "logs", "action": "start_trace", "result_id": "t"},
                {"domain": "incidents", "action": "create_incident", "result_id": "inc-forged"},
            ]
        },
        headers=logs,
    )
    assert batch.status_code == 403
    assert secured.get(f"/runs/{run['id']}", headers=writer).json()["acks"] == []


def test_a_worker_key_moves_only_the_runs_it_leases(secured: TestClient, new_key: NewKey) -> None:
    writer = new_key("acme", "runs:write", "runs:read")
    worker = new_key("acme", "worker")
    hand_driven = create(secured, writer)
    refused = secured.post(
        f"/runs/{hand_driven['id']}/authorize", json={"decision": "GRANTED"}, headers=worker
    )
    assert refused.status_code == 403
    assert "X-Lease-Token" in refused.json()["detail"]
    claimed = secured.post("/runs/claim", json={"worker_id": "w1"}, headers=worker)
    assert claimed.status_code == 200
    token = claimed.json()["lease"]["token"]
    moved = secured.post(
        f"/runs/{claimed.json()['run']['id']}/authorize",
        json={"decision": "GRANTED"},
        headers={**worker, "X-Lease-Token": token},
    )
    assert moved.status_code == 200
    assert moved.json()["phase"] == "AUTHORIZED"


def test_a_worker_key_claims_only_its_tenants_runs(secured: TestClient, new_key: NewKey) -> None:
    admin = new_key("ops", "admin")
    create(secured, admin, tenant_id="globex")
    acme_worker = new_key("acme", "worker")
    answer = secured.post("/runs/claim", json={"worker_id": "w"}, headers=acme_worker)
    assert answer.status_code == 204
    globex_worker = new_key("globex", "worker")
    taken = secured.post("/runs/claim", json={"worker_id": "w"}, headers=globex_worker)
    assert taken.status_code == 200
    assert taken.json()["run"]["tenant_id"] == "globex"
