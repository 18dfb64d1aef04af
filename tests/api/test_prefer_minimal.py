"""`Prefer: return=minimal` (RFC 7240): a move answers the run's state alone (RunStateOut).

Every move and the create answer it when asked, say so in `Preference-Applied`,
and agree with the whole run read back; without the preference (or with any
other) the answer is the whole run, as before. Both backends.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.prefer import wants_minimal
from service.api.schemas import RunOut, RunStateOut
from service.model.audit import DEFAULT_DOMAIN_EXPECTATIONS

MINIMAL = {"Prefer": "return=minimal"}
STATE_FIELDS = set(RunStateOut.model_fields)


def post(client: TestClient, path: str, body: Any = None, **headers: str) -> dict[str, Any]:
    answer = client.post(path, json=body, headers=headers)
    assert answer.status_code in (200, 201), answer.text
    data: dict[str, Any] = answer.json()
    return data


def minimal(client: TestClient, path: str, body: Any = None) -> dict[str, Any]:
    answer = client.post(path, json=body, headers=MINIMAL)
    assert answer.status_code in (200, 201), answer.text
    assert answer.headers["preference-applied"] == "return=minimal"
    data: dict[str, Any] = answer.json()
    return data


def assert_state_of(state: dict[str, Any], client: TestClient) -> None:
    """The state is exactly RunStateOut, and what the whole run read back says."""
    RunStateOut.model_validate(state)
    assert set(state) == STATE_FIELDS, "nothing more than the state, nothing less"
    whole = client.get(f"/runs/{state['id']}").json()
    RunOut.model_validate(whole)
    assert {key: whole[key] for key in STATE_FIELDS} == state


def test_every_move_of_a_governed_run_answers_its_state_when_asked(client: TestClient) -> None:
    run_id = str(uuid.uuid4())
    created = minimal(client, "/runs", {"run_id": run_id, "handler": "h"})
    assert created["phase"] == "CREATED"
    assert_state_of(created, client)
    base = f"/runs/{run_id}"
    state = minimal(client, f"{base}/authorize", {"decision": "GRANTED", "begin_execution": True})
    assert state["phase"] == "EXECUTING"
    assert_state_of(state, client)
    for domain, action in DEFAULT_DOMAIN_EXPECTATIONS:
        post(client, f"{base}/acks", {"domain": domain, "action": action, "result_id": None})
    state = minimal(client, f"{base}/execution-complete", {"success": True})
    assert state["phase"] == "GOVERNANCE_CHECK" and state["execution_success"] is True
    assert_state_of(state, client)
    check = minimal(client, f"{base}/governance-check", {"timeout_ms": 100, "finalize": True})
    assert check["passed"] is True
    assert check["run"]["phase"] == "COMPLETED"
    assert check["run"]["governance"]["passed"] is True, "the verdict is in the state"
    assert_state_of(check["run"], client)


def test_without_the_preference_the_answer_is_the_whole_run(client: TestClient) -> None:
    for headers in ({}, {"Prefer": "return=representation"}, {"Prefer": "respond-async"}):
        answer = client.post("/runs", json={"handler": "h"}, headers=headers)
        assert answer.status_code == 201
        assert "preference-applied" not in answer.headers
        RunOut.model_validate(answer.json())
        assert "history" in answer.json()


def test_a_replayed_create_answers_its_state_with_200(client: TestClient) -> None:
    body = {"handler": "h", "idempotency_key": "once"}
    first = client.post("/runs", json=body, headers=MINIMAL)
    again = client.post("/runs", json=body, headers=MINIMAL)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert set(again.json()) == STATE_FIELDS


def test_a_refused_move_is_the_same_problem_either_way(client: TestClient) -> None:
    run_id = post(client, "/runs", {"handler": "h"})["id"]
    plain = client.post(f"/runs/{run_id}/begin-execution")
    asked = client.post(f"/runs/{run_id}/begin-execution", headers=MINIMAL)
    assert plain.status_code == asked.status_code == 409
    assert plain.json()["detail"] == asked.json()["detail"]
    assert "preference-applied" not in asked.headers
    assert client.get(f"/runs/{run_id}").json()["phase"] == "CREATED", "nothing was moved"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (["return=minimal"], True),
        (["RETURN = Minimal"], True),
        (['return="minimal"'], True),
        (["respond-async, return=minimal; x=1"], True),
        (["wait=10", "return=minimal"], True),
        (["return=representation, return=minimal"], False),  # the first one counts
        (["return=representation"], False),
        (["return"], False),
        ([""], False),
        ([",,;;=="], False),
        (["minimal"], False),
        ([], False),
    ],
)
def test_the_prefer_header_is_read_as_rfc_7240_says(headers: list[str], expected: bool) -> None:
    assert wants_minimal(headers) is expected
