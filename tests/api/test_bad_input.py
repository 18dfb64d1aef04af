"""Invariant 5: bad input is refused with a clear error and leaves what was stored unchanged.

Every case snapshots the runs through the API (GET /runs/{id}, and the whole
list for creation) before the bad request and compares after it.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
from fastapi.testclient import TestClient

from service.api.limits import MAX_BODY_BYTES
from service.config import MAX_TIMEOUT_MS
from service.model.phases import RunPhase
from tests.api.runs_api import (
    DOMAIN_PAIRS,
    FINALIZE_RUN,
    UNKNOWN_RUN,
    RunsApi,
    finalize_run_acks,
    pairs,
)
from tests.support.server import running_server

JSON = {"content-type": "application/json"}

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


@contextlib.contextmanager
def nothing_changes(api: RunsApi) -> Iterator[None]:
    """Every stored run, as the API shows it, is the same after the block as before."""
    before = api.all_runs()
    yield
    after = api.all_runs()
    assert len(after) == len(before), "a refused request created or removed a run"
    for old, new in zip(before, after, strict=True):
        assert new == old, f"a refused request changed run {old['id']}"


def detail_text(response: httpx.Response) -> str:
    """The error's `detail`, which must exist and say something."""
    body = response.json()
    assert "detail" in body, body
    detail = body["detail"]
    assert detail, body
    if isinstance(detail, list):  # validation errors: each names where and what
        for error in detail:
            assert error.get("loc") and error.get("msg"), error
    return detail if isinstance(detail, str) else json.dumps(detail)


def refused(response: httpx.Response, status: int, *mentions: str) -> httpx.Response:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: expected {status}, "
        f"got {response.status_code}: {response.text[:1000]}"
    )
    text = detail_text(response)
    for word in mentions:
        assert word in text, f"the error does not mention {word!r}: {text}"
    return response


def statuses(run: dict[str, Any]) -> list[str]:
    return [e["status"] for e in run["expectations"]]


def send(
    http: TestClient, method: str, path: str, body: Any = None, raw: bytes | None = None
) -> httpx.Response:
    if raw is not None:
        return http.request(method, path, content=raw, headers=JSON)
    return http.request(method, path, **({} if body is None else {"json": body}))


# -- ids ---------------------------------------------------------------------------


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


# -- the phase machine -----------------------------------------------------------

# action -> (path, body, the phase it asks for)
ACTIONS: dict[str, tuple[str, Any, RunPhase]] = {
    "authorize": ("authorize", {"decision": "GRANTED"}, RunPhase.AUTHORIZED),
    "deny": ("authorize", {"decision": "DENIED"}, RunPhase.AUTHORIZED),
    "authorize-and-begin": (
        "authorize",
        {"decision": "GRANTED", "begin_execution": True},
        RunPhase.AUTHORIZED,
    ),
    "begin-execution": ("begin-execution", None, RunPhase.EXECUTING),
    "execution-complete": ("execution-complete", {"success": True}, RunPhase.GOVERNANCE_CHECK),
    "governance-check": ("governance-check", {"timeout_ms": 1}, RunPhase.GOVERNANCE_CHECK),
    "check-and-finalize": (
        "governance-check",
        {"timeout_ms": 1, "finalize": True},
        RunPhase.GOVERNANCE_CHECK,
    ),
    "begin-finalization": ("begin-finalization", None, RunPhase.FINALIZING),
    "finalize": ("finalize", {"success": True}, RunPhase.COMPLETED),
    "finalize-failed": ("finalize", {"success": False}, RunPhase.FAILED),
    "fail": ("fail", {"error": "abandoned"}, RunPhase.FAILED),
}
# state -> the actions that phase (with or without a recorded check) allows
ALLOWED: dict[str, set[str]] = {
    "CREATED": {"authorize", "deny", "authorize-and-begin", "fail"},
    "AUTHORIZED": {"begin-execution", "fail"},
    "EXECUTING": {"execution-complete", "fail"},
    "GOVERNANCE_CHECK unchecked": {
        "governance-check",
        "check-and-finalize",
        "finalize-failed",
        "fail",
    },
    "GOVERNANCE_CHECK checked": {
        "governance-check",
        "check-and-finalize",
        "begin-finalization",
        "finalize",
        "finalize-failed",
        "fail",
    },
    "FINALIZING": {"finalize", "finalize-failed", "fail"},
    "COMPLETED": set(),
    "FAILED": set(),
}


def _run_in(api: RunsApi, state: str) -> str:
    phase, _, checked = state.partition(" ")
    return api.at(RunPhase(phase), checked=checked == "checked")


def test_a_move_the_phase_machine_forbids_is_409_naming_both_phases(
    client: TestClient, api: RunsApi
) -> None:
    """Every action refused in every state (phase, with or without a recorded check)."""
    runs = {state: _run_in(api, state) for state in ALLOWED}
    with nothing_changes(api):
        for state, run_id in runs.items():
            current = state.partition(" ")[0]
            for name, (path, body, requested) in ACTIONS.items():
                if name in ALLOWED[state]:
                    continue
                response = send(client, "POST", f"/runs/{run_id}/{path}", body)
                refused(response, 409, current, requested.value, run_id)
                payload = response.json()
                assert payload["current_phase"] == current, (state, name, payload)
                assert payload["requested_phase"] == requested.value, (state, name, payload)


def test_finalize_success_and_begin_finalization_need_a_recorded_check(
    client: TestClient, api: RunsApi
) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    api.ack_all(run_id)
    with nothing_changes(api):
        for path, body in (("finalize", {"success": True}), ("finalize", None)):
            response = send(client, "POST", f"/runs/{run_id}/{path}", body)
            refused(response, 409, "governance check", "GOVERNANCE_CHECK", "COMPLETED")
        response = send(client, "POST", f"/runs/{run_id}/begin-finalization")
        refused(response, 409, "governance check", "GOVERNANCE_CHECK", "FINALIZING")


def test_second_finalize_and_fail_after_finalize_change_nothing(
    client: TestClient, api: RunsApi
) -> None:
    completed = api.at(RunPhase.COMPLETED)
    failed = api.at(RunPhase.GOVERNANCE_CHECK)
    api.finalize(failed, success=False)
    with nothing_changes(api):
        for run_id, phase in ((completed, "COMPLETED"), (failed, "FAILED")):
            for path, body in (
                ("finalize", {"success": True}),
                ("finalize", {"success": False, "error": "again"}),
                ("fail", {"error": "too late"}),
            ):
                response = send(client, "POST", f"/runs/{run_id}/{path}", body)
                refused(response, 409, phase, "terminal" if path == "finalize" else phase)
    for run_id in (completed, failed):
        assert finalize_run_acks(api.get(run_id)) == 1


# -- acks -----------------------------------------------------------------------

BLANKS = ["", " ", "\t", "\n", " incidents", "incidents ", "incidents\n", "\u00a0"]


def test_ack_with_empty_or_whitespace_names_is_422(client: TestClient, api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    with nothing_changes(api):
        for field in ("domain", "action"):
            for blank in BLANKS:
                body = {"domain": "incidents", "action": "create_incident", field: blank}
                response = send(client, "POST", f"/runs/{run_id}/acks", body)
                refused(response, 422, field)


def test_ack_for_an_unknown_run_is_404(client: TestClient, api: RunsApi) -> None:
    api.create()
    with nothing_changes(api):
        body = {"domain": "incidents", "action": "create_incident"}
        refused(send(client, "POST", f"/runs/{UNKNOWN_RUN}/acks", body), 404, UNKNOWN_RUN)


def test_ack_on_the_orchestrator_domain_is_422(client: TestClient, api: RunsApi) -> None:
    live = api.at(RunPhase.GOVERNANCE_CHECK, checked=True)
    terminal = api.at(RunPhase.COMPLETED)
    with nothing_changes(api):
        for run_id in (live, terminal):
            for action in ("finalize_run", "anything"):
                body = {"domain": "orchestrator", "action": action}
                refused(send(client, "POST", f"/runs/{run_id}/acks", body), 422, "orchestrator")


def test_ack_for_a_terminal_run_is_kept_as_late_drift_and_changes_nothing_else(
    api: RunsApi,
) -> None:
    run_id = api.at(RunPhase.COMPLETED)
    before = api.get(run_id)
    late = [
        api.ack(run_id, "incidents", "create_incident", result_id="inc-late"),
        api.ack(run_id, "search", "index"),
    ]
    assert [a["late"] for a in late] == [True, True]
    after = api.get(run_id)
    # (`incidents` lists incident acks, late ones too: an incident opened late still exists)
    for field in before:
        if field not in ("acks", "reconciliation", "incidents"):
            assert after[field] == before[field], field
    assert after["acks"][: len(before["acks"])] == before["acks"]
    assert [(a["domain"], a["action"], a["late"]) for a in after["acks"][-2:]] == [
        ("incidents", "create_incident", True),
        ("search", "index", True),
    ]
    assert after["reconciliation"]["drift"] == [
        ["incidents", "create_incident"],
        ["search", "index"],
    ]
    assert after["reconciliation"]["status"] == "INCOMPLETE"
    assert finalize_run_acks(after) == 1


def test_a_late_ack_never_counts_as_evidence(api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    failed = api.governance_check(run_id, timeout_ms=1, require_all_acks=True)["run"]
    assert failed["phase"] == "FAILED"
    api.ack(run_id, "incidents", "create_incident")
    after = api.get(run_id)
    assert {k: v for k, v in after.items() if k not in ("acks", "reconciliation")} == {
        k: v for k, v in failed.items() if k not in ("acks", "reconciliation")
    }
    assert statuses(after) == statuses(failed)
    assert ["incidents", "create_incident"] in after["reconciliation"]["missing"]
    assert ["incidents", "create_incident"] in after["reconciliation"]["drift"]


def test_duplicate_ack_is_recorded_and_reported_as_drift(api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    first = api.ack(run_id, "incidents", "create_incident")
    second = api.ack(run_id, "incidents", "create_incident")
    assert first["late"] is second["late"] is False
    run = api.get(run_id)
    assert pairs(run["acks"]) == [("incidents", "create_incident")] * 2
    assert run["reconciliation"]["drift"] == [["incidents", "create_incident"]]
    assert run["phase"] == "GOVERNANCE_CHECK"
    for domain, action in DOMAIN_PAIRS[1:]:
        api.ack(run_id, domain, action)
    # drift is reported, not blocking
    check = api.governance_check(run_id, timeout_ms=1)
    assert check["passed"] is True
    assert check["reconciliation"]["drift"] == [["incidents", "create_incident"]]


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


# -- hostile values: refused (422) or stored exactly, never a 500 -------------------

# Raw JSON bodies, because some of these are not RFC 8259 JSON but Python's parser takes them.
HOSTILE_INPUTS: dict[str, bytes] = {
    "nan": b'{"input": NaN}',
    "infinity": b'{"input": Infinity}',
    "overflowing-float": b'{"input": 1e400}',
    "int-beyond-64-bits": b'{"input": 18446744073709551617}',
    "lone-surrogate": b'{"input": "\\ud800"}',
    "nul-character": b'{"input": "a\\u0000b"}',
    "nested-300-deep": b'{"input": ' + b"[" * 300 + b"]" * 300 + b"}",
}


def test_run_input_is_refused_or_stored_exactly(raw_client: TestClient) -> None:
    problems = []
    for name, raw in HOSTILE_INPUTS.items():
        response = raw_client.post("/runs", content=raw, headers=JSON)
        if response.status_code == 422:
            detail_text(response)
            continue
        if response.status_code != 201:
            problems.append(f"{name}: POST answered {response.status_code}")
            continue
        sent = json.loads(raw)["input"]
        got = raw_client.get(f"/runs/{response.json()['id']}")
        if got.status_code != 200:
            problems.append(f"{name}: stored, then GET /runs/{{id}} answers {got.status_code}")
        elif json.dumps(got.json()["input"]) != json.dumps(sent):
            problems.append(f"{name}: stored as {json.dumps(got.json()['input'])[:40]}")
    listing = raw_client.get("/runs")
    if listing.status_code != 200:
        problems.append(f"afterwards GET /runs answers {listing.status_code} to everyone")
    assert not problems, "input neither refused (422) nor kept as sent:\n" + "\n".join(problems)


NUL = "a\u0000b"
NUL_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("tenant_id", "/runs", {"tenant_id": NUL}),
    ("handler", "/runs", {"handler": NUL}),
    ("idempotency_key", "/runs", {"idempotency_key": NUL}),
    ("expectation", "/runs", {"expectations": [{"domain": NUL, "action": "a"}]}),
    ("ack domain", "acks", {"domain": NUL, "action": "a"}),
    ("ack result_id", "acks", {"domain": "d", "action": "a", "result_id": NUL}),
    ("ack error", "acks", {"domain": "d", "action": "a", "error": NUL}),
    ("decision", "authorize", {"decision": NUL}),
    ("fail error", "fail", {"error": NUL}),
]


def test_nul_characters_are_refused_or_stored_exactly(raw_client: TestClient) -> None:
    problems = []
    for name, path, body in NUL_CASES:
        run_id = raw_client.post("/runs", json={}).json()["id"]
        before = raw_client.get(f"/runs/{run_id}").json()
        url = path if path.startswith("/") else f"/runs/{run_id}/{path}"
        response = raw_client.post(url, json=body)
        if response.status_code == 422:
            detail_text(response)
            if raw_client.get(f"/runs/{run_id}").json() != before:
                problems.append(f"{name}: refused but the run changed")
        elif response.status_code not in (200, 201):
            problems.append(f"{name}: answered {response.status_code}")
        elif name == "idempotency_key":
            if raw_client.post(url, json=body).json()["id"] != response.json()["id"]:
                problems.append(f"{name}: stored, but a replay made another run")
        elif not _holds(response.json(), NUL):
            problems.append(f"{name}: stored without its NUL character")
    query = raw_client.get("/runs", params={"tenant_id": NUL})
    if query.status_code not in (200, 422):
        problems.append(f"GET /runs?tenant_id=a%00b answered {query.status_code}")
    assert not problems, "NUL neither refused (422) nor kept:\n" + "\n".join(problems)


def _holds(value: Any, text: str) -> bool:
    """Whether `text` is one of the strings somewhere inside a JSON value."""
    if isinstance(value, str):
        return value == text
    if isinstance(value, dict):
        return any(_holds(v, text) for v in value.values())
    if isinstance(value, list):
        return any(_holds(v, text) for v in value)
    return False


HOSTILE_DETAILS: dict[str, bytes] = {
    "nan": b"NaN",
    "overflowing-float": b"1e400",
    "lone-surrogate": b'"\\ud800"',
    "nested-300-deep": b"[" * 300 + b"]" * 300,
}


def test_ack_details_are_refused_or_stored_exactly(raw_client: TestClient) -> None:
    problems = []
    for name, value in HOSTILE_DETAILS.items():
        run_id = raw_client.post("/runs", json={}).json()["id"]
        raw = b'{"domain": "d", "action": "a", "details": {"v": ' + value + b"}}"
        response = raw_client.post(f"/runs/{run_id}/acks", content=raw, headers=JSON)
        if response.status_code == 422:
            detail_text(response)
            continue
        run = raw_client.get(f"/runs/{run_id}")
        if response.status_code != 201:
            problems.append(
                f"{name}: POST answered {response.status_code}, "
                f"then GET /runs/{{id}} answers {run.status_code}"
            )
            continue
        if run.status_code != 200:
            problems.append(f"{name}: recorded, then GET /runs/{{id}} answers {run.status_code}")
        else:
            stored = json.dumps(run.json()["acks"][-1]["details"])
            if stored != json.dumps(json.loads(raw)["details"]):
                problems.append(f"{name}: stored as {stored[:40]}")
    assert not problems, "details neither refused (422) nor kept:\n" + "\n".join(problems)
