"""GET /runs/{run_id}/verify: the sealed history recomputed, on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.authority import Authority
from service.config import Settings
from service.model.phases import utc_now
from tests.api.conftest import GOVERNANCE_TIMEOUT_MS
from tests.support.chains import LIFECYCLE_ENTRIES, execute, lifecycle


def authority_of(client: TestClient) -> Authority:
    authority: Authority = client.app.state.authority  # type: ignore[attr-defined]
    return authority


def test_an_untouched_history_is_intact(client: TestClient) -> None:
    run_id = lifecycle(authority_of(client))

    answer = client.get(f"/runs/{run_id}/verify")

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"intact": True, "checked": LIFECYCLE_ENTRIES, "first_broken": None}


def test_a_new_run_is_intact_with_nothing_checked_yet(client: TestClient) -> None:
    created = client.post("/runs", json={"handler": "job"})
    assert created.status_code == 201, created.text

    answer = client.get(f"/runs/{created.json()['id']}/verify")

    assert answer.json() == {"intact": True, "checked": 0, "first_broken": None}


def test_an_edited_transition_and_an_edited_ack_show_on_their_runs_only(
    client: TestClient, migrated_url: str
) -> None:
    authority = authority_of(client)
    moved, acked, untouched = (lifecycle(authority) for _ in range(3))
    edit_transition = "UPDATE transitions SET reason = 'fine' WHERE run_id = :id AND seq = 1"
    edit_ack = "UPDATE acks SET result_id = 'forged' WHERE run_id = :id AND result_id = 'trace-1'"

    assert execute(migrated_url, edit_transition, id=moved) == 1
    assert execute(migrated_url, edit_ack, id=acked) == 2

    verdicts = {
        run_id: client.get(f"/runs/{run_id}/verify").json() for run_id in (moved, acked, untouched)
    }
    assert verdicts[moved] == {
        "intact": False,
        "checked": 1,
        "first_broken": {"kind": "transition", "seq": 1},
    }
    assert verdicts[acked] == {
        "intact": False,
        "checked": 5,
        "first_broken": {"kind": "ack", "seq": 5},
    }
    assert verdicts[untouched]["intact"] is True


def test_an_unknown_run_is_404_and_a_bad_id_422(client: TestClient) -> None:
    assert client.get(f"/runs/{uuid.uuid4()}/verify").status_code == 404
    assert client.get("/runs/not-a-uuid/verify").status_code == 422


def test_the_endpoint_is_in_the_contract(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/runs/{run_id}/verify"]["get"]

    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/VerifyOut"}
    assert {"401", "403", "404"} <= set(operation["responses"])


# -- with keys ------------------------------------------------------------------------


@pytest.fixture
def secured(migrated_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=migrated_url, governance_timeout_ms=GOVERNANCE_TIMEOUT_MS)
    with TestClient(create_app(settings), base_url="http://rok.example") as current:
        yield current


def bearer(client: TestClient, tenant: str, *scopes: str) -> dict[str, str]:
    _, secret = authority_of(client).keys.create(tenant, scopes, "test", utc_now())
    return {"Authorization": f"Bearer {secret}"}


def test_a_reader_verifies_its_tenants_runs_only(secured: TestClient) -> None:
    writer = bearer(secured, "acme", "runs:write")
    created = secured.post("/runs", json={"handler": "job"}, headers=writer)
    assert created.status_code == 201, created.text
    path = f"/runs/{created.json()['id']}/verify"

    assert secured.get(path, headers=bearer(secured, "acme", "runs:read")).status_code == 200
    assert secured.get(path, headers=bearer(secured, "other", "runs:read")).status_code == 404
    assert secured.get(path, headers=bearer(secured, "acme", "worker")).status_code == 403
    assert secured.get(path).status_code == 401
