"""Invariant 5, run ids: an unknown id is 404 and a malformed one 422 on every endpoint."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.api.refusals import nothing_changes, refused, send
from tests.api.runs_api import UNKNOWN_RUN, RunsApi

# Every endpoint that takes a run id, with a body it would accept.
RUN_ENDPOINTS: list[tuple[str, str, Any]] = [
    ("GET", "", None),
    ("POST", "/authorize", {"decision": "GRANTED"}),
    ("POST", "/begin-execution", None),
    ("POST", "/execution-complete", {"success": True}),
    ("POST", "/acks", {"domain": "incidents", "action": "create_incident"}),
    ("POST", "/governance-check", {"timeout_ms": 1}),
    ("POST", "/begin-finalization", None),
    ("POST", "/finalize", {"success": True}),
    ("POST", "/fail", {"error": "abandoned"}),
    ("GET", "/reconciliation", None),
]


def test_unknown_run_is_404_on_every_endpoint(client: TestClient, api: RunsApi) -> None:
    api.create()
    with nothing_changes(api):
        for method, suffix, body in RUN_ENDPOINTS:
            response = send(client, method, f"/runs/{UNKNOWN_RUN}{suffix}", body)
            refused(response, 404, UNKNOWN_RUN)


BAD_IDS = ["not-a-uuid", "1234", "00000000-0000-4000-8000-00000000000g", "' OR 1=1 --", "%00"]


def test_malformed_run_id_is_422_on_every_endpoint(client: TestClient, api: RunsApi) -> None:
    api.create()
    with nothing_changes(api):
        for bad_id in BAD_IDS:
            for method, suffix, body in RUN_ENDPOINTS:
                response = send(client, method, f"/runs/{bad_id}{suffix}", body)
                refused(response, 422, "run_id")


def test_any_spelling_of_a_uuid_finds_the_same_run(api: RunsApi) -> None:
    run = api.create()
    plain = uuid.UUID(run["id"])
    for spelling in (str(plain).upper(), plain.hex, f"{{{plain}}}"):
        assert api.get(spelling) == run
