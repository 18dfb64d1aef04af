"""What the contract fuzzing found, pinned as plain examples (tests.contract.test_schemathesis).

- A body that is not UTF-8 (or nested past the JSON parser's limit) was a
  `400 There was an error parsing the body`, undocumented; it is a 422 naming
  the body, like every malformed body. A body sent as another content type is
  a 422 that says to send JSON.
- A 422 had two shapes (a list of field errors, or one sentence); the contract
  documented only the first. Every 422 is now one problem document: `detail` a
  sentence, `errors` the list.
- Tenant B's heartbeat on a run of tenant A answered 409 ("the run holds no
  lease"), and its governance check 409 naming the run's phase: both told B
  the run exists. Both are 404 now, as every other move is.
- A claim retried with another tenant's worker and claim ids returned that
  tenant's run and lease (found reading the heartbeat's code).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.api.auth import is_public
from service.api.openapi_export import openapi_schema
from tests.contract.conftest import TENANT_A, Live

JSON = {"content-type": "application/json"}


def _post(live: Live, path: str, headers: dict[str, str], **options: Any) -> Any:
    return live.client.post(path, headers=headers, **options)


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe{}", b"\x05\x80", b"[" * 100_000],
    ids=["latin-1", "not-text", "nested-too-deep"],
)
def test_a_body_that_cannot_be_decoded_is_a_422_naming_the_body(live: Live, body: bytes) -> None:
    answer = _post(live, "/runs", {**live.admin, **JSON}, content=body)
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert error["loc"][0] == "body"
    assert error["type"] == "json_invalid"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_not_sent_as_json_is_a_422_that_says_so(
    live: Live, content_type: str | None
) -> None:
    headers = {**live.admin, **({"content-type": content_type} if content_type else {})}
    body = json.dumps({"handler": "h"}).encode()
    answer = _post(live, "/runs", headers, content=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [
        {
            "loc": ["body"],
            "msg": "the body must be JSON, sent with Content-Type: application/json",
            "type": "content_type",
        }
    ]


def test_every_operation_documents_its_422_as_a_validation_problem() -> None:
    schema = openapi_schema()
    problem = schema["components"]["schemas"]["ValidationProblem"]
    assert problem["properties"]["detail"]["type"] == "string"
    assert "errors" in problem["required"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if is_public(path):  # /healthz /readyz /version /metrics: no key, no input
                assert "422" not in responses
                continue
            media = responses["422"]["content"]["application/problem+json"]
            assert media["schema"] == {"$ref": "#/components/schemas/ValidationProblem"}, (
                method,
                path,
            )
            for status in ("401", "403", "429"):
                assert status in responses, (method, path, status)
            if method == "post":
                assert {"409", "413"} <= set(responses), (method, path)
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_another_tenants_heartbeat_and_governance_check_find_no_run(live: Live) -> None:
    leased = live.tenant_a_runs[-1]  # leased to tenant-a-worker (conftest)
    checking = live.tenant_a_runs[3]  # in GOVERNANCE_CHECK
    heartbeat = {"worker_id": "tenant-a-worker", "lease_token": "0" * 32}
    for run_id in (leased, checking):
        answer = _post(live, f"/runs/{run_id}/heartbeat", live.tenant_b, json=heartbeat)
        assert answer.status_code == 404, answer.text
        answer = _post(live, f"/runs/{run_id}/governance-check", live.tenant_b, json={})
        assert answer.status_code == 404, answer.text
        assert "current_phase" not in answer.json()


def test_a_claim_retried_under_another_tenant_does_not_get_its_run(live: Live) -> None:
    handler = "claimed-once"
    created = _post(live, "/runs", live.admin, json={"tenant_id": TENANT_A, "handler": handler})
    assert created.status_code == 201, created.text
    claim = {"worker_id": "w", "claim_id": "retried", "handlers": [handler]}
    first = _post(live, "/runs/claim", live.admin, json=claim)
    assert first.status_code == 200, first.text
    assert first.json()["run"]["id"] == created.json()["id"]
    again = _post(live, "/runs/claim", live.tenant_b, json=claim)
    assert again.status_code == 204, again.text
