"""Invariant 5, request bodies: timeouts out of range, bodies over 1 MiB, unknown
fields and malformed JSON are refused (422 or 413) and change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from service.api.limits import MAX_BODY_BYTES
from service.config import MAX_TIMEOUT_MS
from service.model.phases import RunPhase
from tests.api.refusals import JSON, nothing_changes, refused, send
from tests.api.runs_api import FINALIZE_RUN, RunsApi
from tests.support.server import running_server

# -- timeouts ------------------------------------------------------------------

BAD_TIMEOUTS = [0, -1, -MAX_TIMEOUT_MS, MAX_TIMEOUT_MS + 1, 10**15, 10**30]


def test_create_refuses_timeouts_outside_1ms_to_24h(client: TestClient, api: RunsApi) -> None:
    api.create()
    with nothing_changes(api):
        for bad in BAD_TIMEOUTS:
            refused(client.post("/runs", json={"run_timeout_ms": bad}), 422, "run_timeout_ms")
            body = {"expectations": [{"domain": "d", "action": "a", "deadline_ms": bad}]}
            refused(client.post("/runs", json=body), 422, "deadline_ms")
    for good in (1, MAX_TIMEOUT_MS):
        run = api.create(
            run_timeout_ms=good,
            expectations=[{"domain": "d", "action": "a", "deadline_ms": good}],
        )
        assert run["run_timeout_ms"] == good
        assert run["expectations"][0]["deadline_ms"] == good


def test_governance_check_refuses_timeouts_outside_1ms_to_24h(
    client: TestClient, api: RunsApi
) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    with nothing_changes(api):
        for bad in BAD_TIMEOUTS:
            response = client.post(f"/runs/{run_id}/governance-check", json={"timeout_ms": bad})
            refused(response, 422, "timeout_ms")
    # 24 h is allowed; with nothing outstanding the check answers at once
    empty = api.at(RunPhase.GOVERNANCE_CHECK, expectations=[])
    assert api.governance_check(empty, timeout_ms=MAX_TIMEOUT_MS)["passed"] is True


def test_timeouts_must_be_json_integers(client: TestClient, api: RunsApi) -> None:
    """`true` is not a timeout (it would silently mean 1 ms), nor is the string "1000"."""
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    accepted = []
    for bad in (True, False, "1000", 1000.5, [1000], {"ms": 1000}):
        for path, field in (
            ("/runs", "run_timeout_ms"),
            (f"/runs/{run_id}/governance-check", "timeout_ms"),
        ):
            response = client.post(path, json={field: bad})
            if response.status_code != 422:
                accepted.append(f"{field}={json.dumps(bad)} -> {response.status_code}")
    assert not accepted, "accepted as a timeout: " + "; ".join(accepted)


# -- body size -------------------------------------------------------------------


def test_a_body_over_1_mib_is_413(client: TestClient, api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    padding = "x" * (MAX_BODY_BYTES + 1)
    with nothing_changes(api):
        refused(client.post("/runs", json={"input": padding}), 413, str(MAX_BODY_BYTES))
        body = {"domain": "incidents", "action": "create_incident", "details": {"p": padding}}
        refused(client.post(f"/runs/{run_id}/acks", json=body), 413)
        refused(client.post(f"/runs/{run_id}/fail", json={"error": padding}), 413)
    # just under the limit is parsed (and refused or accepted on its merits)
    under = client.post("/runs", json={"input": "x" * (MAX_BODY_BYTES - 100)})
    assert under.status_code == 201


def test_a_chunked_body_over_1_mib_is_413(sqlite_migrated_url: str) -> None:
    """Without Content-Length (Transfer-Encoding: chunked) the limit still holds."""

    def chunks() -> Iterator[bytes]:
        yield b'{"input": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    with running_server(sqlite_migrated_url) as server, server.client() as http:
        api = RunsApi(http)
        run_id = api.create()["id"]
        with nothing_changes(api):
            response = http.post("/runs", content=chunks(), headers=JSON)
            assert response.request.headers.get("transfer-encoding") == "chunked"
            assert "content-length" not in response.request.headers
            refused(response, 413)
            response = http.post(f"/runs/{run_id}/fail", content=chunks(), headers=JSON)
            refused(response, 413)


# -- unknown fields, malformed JSON ------------------------------------------------


def test_unknown_fields_are_422_in_every_body(client: TestClient, api: RunsApi) -> None:
    created = api.at(RunPhase.CREATED)
    executing = api.at(RunPhase.EXECUTING)
    checked = api.at(RunPhase.GOVERNANCE_CHECK, checked=True)
    # (path, body, the unknown field); each body is otherwise one the endpoint accepts now
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/runs", {"handler": "h", "prority": 5}, "prority"),
        ("/runs", {"expectations": [{"domain": "d", "action": "a", "deadline": 5}]}, "deadline"),
        (f"/runs/{created}/authorize", {"decision": "GRANTED", "force": True}, "force"),
        (f"/runs/{executing}/execution-complete", {"success": True, "eror": "x"}, "eror"),
        (f"/runs/{checked}/acks", {"domain": "logs", "action": "start_trace", "at": 1}, "at"),
        (f"/runs/{checked}/governance-check", {"timeout_ms": 1, "strict": True}, "strict"),
        (f"/runs/{checked}/finalize", {"success": True, "sucess": False}, "sucess"),
        (f"/runs/{checked}/fail", {"error": "e", "reason": "r"}, "reason"),
    ]
    with nothing_changes(api):
        for path, body, unknown in cases:
            refused(client.post(path, json=body), 422, unknown)


def test_a_body_sent_to_a_move_that_takes_none_is_refused(client: TestClient, api: RunsApi) -> None:
    """begin-execution and begin-finalization take no body: any field in one is unknown."""
    authorized = api.at(RunPhase.AUTHORIZED)
    checked = api.at(RunPhase.GOVERNANCE_CHECK, checked=True)
    with nothing_changes(api):
        response = client.post(f"/runs/{authorized}/begin-execution", json={"dry_run": True})
        refused(response, 422, "dry_run")
        response = client.post(f"/runs/{checked}/begin-finalization", json={"skip": True})
        refused(response, 422, "skip")


INVALID_JSON = [b"{bad", b'{"success": true', b"[]", b'"GRANTED"', b"\xff\xfe", b"{'a': 1}"]


def test_the_combined_moves_take_booleans_only(client: TestClient, api: RunsApi) -> None:
    created = api.create()["id"]
    waiting = api.at(RunPhase.GOVERNANCE_CHECK)
    with nothing_changes(api):
        for flag in ("yes", 1, None, [True]):
            body = {"decision": "GRANTED", "begin_execution": flag}
            refused(
                send(client, "POST", f"/runs/{created}/authorize", body), 422, "begin_execution"
            )
            body = {"timeout_ms": 1, "finalize": flag}
            refused(
                send(client, "POST", f"/runs/{waiting}/governance-check", body), 422, "finalize"
            )


def test_invalid_json_is_422(client: TestClient, api: RunsApi) -> None:
    created = api.at(RunPhase.CREATED)
    executing = api.at(RunPhase.EXECUTING)
    checked = api.at(RunPhase.GOVERNANCE_CHECK, checked=True)
    paths = [
        "/runs",
        f"/runs/{created}/authorize",
        f"/runs/{executing}/execution-complete",
        f"/runs/{checked}/acks",
        f"/runs/{checked}/governance-check",
        f"/runs/{checked}/finalize",
        f"/runs/{checked}/fail",
    ]
    with nothing_changes(api):
        for path in paths:
            for raw in INVALID_JSON:
                refused(send(client, "POST", path, raw=raw), 422)


def test_expectations_listed_twice_or_unackable_are_422(client: TestClient, api: RunsApi) -> None:
    api.create()
    twice = [{"domain": "d", "action": "a"}, {"domain": "d", "action": "a", "deadline_ms": 5}]
    with nothing_changes(api):
        refused(client.post("/runs", json={"expectations": twice}), 422, "d/a", "twice")
        for action in ("create_incident", "finalize"):
            body = {"expectations": [{"domain": "orchestrator", "action": action}]}
            refused(client.post("/runs", json=body), 422, f"orchestrator/{action}")
        for blank in ("", " ", "a "):
            body = {"expectations": [{"domain": blank, "action": "a"}]}
            refused(client.post("/runs", json=body), 422, "domain")
    # finalize_run may be declared with its own deadline; it is not doubled
    run = api.create(expectations=[{"domain": "orchestrator", "action": "finalize_run",
                                    "deadline_ms": 60_000}])  # fmt: skip
    assert [(e["domain"], e["action"], e["deadline_ms"]) for e in run["expectations"]] == [
        (*FINALIZE_RUN, 60_000)
    ]
