"""The run lifecycle over HTTP, checked field by field against DESIGN.md section 4."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from service.model.phases import RunPhase
from tests.api.runs_api import (
    DEFAULT_PAIRS,
    DOMAIN_PAIRS,
    FINALIZE_RUN,
    RunsApi,
    WaitingCheck,
    finalize_run_acks,
    pairs,
    parse_time,
)
from tests.support.server import ServerProcess

GRACE_MS = 5000  # Settings.grace_period_ms default
EMPTY_RECONCILIATION = {
    "status": "COMPLETE",
    "missing": [],
    "drift": [],
    "invalid": [],
    "failed": [],
    "stale": False,
    "pending": [],
}
# all in, the run not ended yet: finalize_run waits for the end, which is no gap
AWAITING_THE_END = {**EMPTY_RECONCILIATION, "pending": [list(FINALIZE_RUN)]}


def statuses(run: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(e["domain"], e["action"]): e["status"] for e in run["expectations"]}


def moves(run: dict[str, Any]) -> list[tuple[str, str]]:
    return [(h["from"], h["to"]) for h in run["history"]]


def test_full_lifecycle_field_by_field(api: RunsApi) -> None:
    created = api.create(
        tenant_id="acme",
        handler="summarize",
        input={"doc": "q3.pdf", "pages": [1, 2]},
        run_timeout_ms=10_000,
    )
    run_id = created["id"]
    assert str(uuid.UUID(run_id)) == run_id
    assert created["tenant_id"] == "acme"
    assert created["handler"] == "summarize"
    assert created["input"] == {"doc": "q3.pdf", "pages": [1, 2]}
    assert created["phase"] == "CREATED"
    assert created["attempt"] == 1
    assert created["error"] is None
    assert created["history"] == []
    assert created["acks"] == []
    assert parse_time(created["created_at"]) == parse_time(created["updated_at"])
    assert created["expectations"] == [
        {"domain": d, "action": a, "deadline_ms": 10_000 + GRACE_MS, "deadline": None,
         "status": "PENDING"}
        for d, a in DEFAULT_PAIRS
    ]  # fmt: skip
    # nothing acked yet: PENDING, never COMPLETE (DESIGN section 2)
    assert created["reconciliation"] == {
        **EMPTY_RECONCILIATION,
        "status": "PENDING",
        "pending": sorted([list(p) for p in DEFAULT_PAIRS]),
    }
    assert api.get(run_id) == created

    # authorize: the audit clock starts, every deadline = that moment + deadline_ms
    authorized = api.authorize(run_id, reason="policy allows summarize")
    assert authorized["phase"] == "AUTHORIZED"
    assert len(authorized["history"]) == 1
    entry = authorized["history"][0]
    assert (entry["from"], entry["to"]) == ("CREATED", "AUTHORIZED")
    assert entry["reason"] == "policy allows summarize"
    started = parse_time(entry["at"])
    assert started >= parse_time(created["created_at"])
    for exp in authorized["expectations"]:
        assert parse_time(exp["deadline"]) == started + timedelta(milliseconds=exp["deadline_ms"])
        assert exp["status"] == "PENDING"
    assert parse_time(authorized["updated_at"]) == started

    executing = api.begin_execution(run_id)
    assert executing["phase"] == "EXECUTING"
    assert moves(executing)[-1] == ("AUTHORIZED", "EXECUTING")

    checking = api.execution_complete(run_id, success=True)
    assert checking["phase"] == "GOVERNANCE_CHECK"
    assert moves(checking)[-1] == ("EXECUTING", "GOVERNANCE_CHECK")
    assert checking["execution_success"] is True
    assert checking["error"] is None
    assert checking["history"][:2] == executing["history"]

    recorded = []
    for domain, action in DOMAIN_PAIRS:
        # the incident domain acks a clean run with result_id null ("looked, nothing to open")
        result_id = None if domain == "incidents" else f"{action}-7"
        ack = api.ack(run_id, domain, action, result_id=result_id)
        assert {k: ack[k] for k in ("domain", "action", "result_id", "error")} == {
            "domain": domain,
            "action": action,
            "result_id": result_id,
            "error": None,
        }
        assert ack["late"] is False
        parse_time(ack["at"])
        recorded.append(ack)
    acked = api.get(run_id)
    assert acked["phase"] == "GOVERNANCE_CHECK"
    assert [{k: a[k] for k in recorded[0]} for a in acked["acks"]] == recorded
    assert statuses(acked) == {**dict.fromkeys(DOMAIN_PAIRS, "ACKED"), FINALIZE_RUN: "PENDING"}
    # finalize_run is pending during governance, never missing
    assert acked["reconciliation"] == AWAITING_THE_END

    check = api.governance_check(run_id, timeout_ms=1000, require_all_acks=True)
    assert set(check) == {"passed", "reconciliation", "run"}
    assert check["passed"] is True
    assert check["reconciliation"] == AWAITING_THE_END
    assert check["run"]["phase"] == "GOVERNANCE_CHECK"
    assert check["run"]["governance"]["passed"] is True
    assert check["run"]["history"] == checking["history"]

    finished = api.finalize(run_id)
    assert finished["phase"] == "COMPLETED"
    assert moves(finished) == [
        ("CREATED", "AUTHORIZED"),
        ("AUTHORIZED", "EXECUTING"),
        ("EXECUTING", "GOVERNANCE_CHECK"),
        ("GOVERNANCE_CHECK", "FINALIZING"),
        ("FINALIZING", "COMPLETED"),
    ]
    times = [parse_time(h["at"]) for h in finished["history"]]
    assert times == sorted(times)
    assert finished["history"][:3] == checking["history"]
    assert finished["acks"][:4] == acked["acks"]
    final_ack = finished["acks"][4]
    assert (final_ack["domain"], final_ack["action"]) == FINALIZE_RUN
    assert final_ack["error"] is None
    assert finalize_run_acks(finished) == 1
    assert set(statuses(finished).values()) == {"ACKED"}
    assert finished["reconciliation"] == EMPTY_RECONCILIATION
    assert finished["error"] is None
    assert finished["execution_success"] is True
    assert parse_time(finished["updated_at"]) >= times[-1]
    assert finished["created_at"] == created["created_at"]
    assert api.get(run_id) == finished
    reconciliation = api.call("GET", f"/runs/{run_id}/reconciliation").json()
    assert reconciliation == finished["reconciliation"]


def test_idempotency_key_replays_the_same_run(api: RunsApi) -> None:
    body: dict[str, Any] = {
        "tenant_id": "acme",
        "handler": "h",
        "input": [1],
        "idempotency_key": "job-42",
    }
    first = api.create(**body)
    replay = api.create(status=200, **body)
    assert replay == first
    assert api.total() == 1

    # a replay after the run moved on still answers with that run, as it is now
    api.authorize(first["id"])
    again = api.create(status=200, **body)
    assert again["id"] == first["id"]
    assert again["phase"] == "AUTHORIZED"

    # the key is per tenant
    other = api.create(**{**body, "tenant_id": "globex"})
    assert other["id"] != first["id"]
    assert api.total() == 2


def test_idempotency_key_with_another_body_is_refused_naming_the_key(api: RunsApi) -> None:
    first = api.create(tenant_id="acme", handler="h", idempotency_key="job-43")
    refused = api.create(status=422, tenant_id="acme", handler="other", idempotency_key="job-43")
    assert "job-43" in refused["detail"]
    assert api.total() == 1
    assert api.get(first["id"]) == first


def test_client_chosen_run_id_and_409_when_it_exists(api: RunsApi) -> None:
    run_id = str(uuid.uuid4())
    created = api.create(run_id=run_id, handler="h")
    assert created["id"] == run_id
    refused = api.create(status=409, run_id=run_id, handler="h")
    assert run_id in refused["detail"]
    refused = api.create(status=409, run_id=run_id, handler="another")
    assert run_id in refused["detail"]
    assert api.total() == 1
    assert api.get(run_id) == created


def test_custom_expectations_replace_the_four_defaults(api: RunsApi) -> None:
    run = api.create(
        run_timeout_ms=20_000,
        expectations=[
            {"domain": "billing", "action": "charge", "deadline_ms": 2_000},
            {"domain": "logs", "action": "start_trace"},
        ],
    )
    assert [(e["domain"], e["action"], e["deadline_ms"]) for e in run["expectations"]] == [
        ("billing", "charge", 2_000),
        ("logs", "start_trace", 20_000 + GRACE_MS),
        ("orchestrator", "finalize_run", 20_000 + GRACE_MS),
    ]
    run_id = run["id"]
    api.authorize(run_id)
    api.begin_execution(run_id)
    api.execution_complete(run_id)
    api.ack(run_id, "billing", "charge", result_id="ch_1")
    api.ack(run_id, "logs", "start_trace")
    check = api.governance_check(run_id, timeout_ms=5000, require_all_acks=True)
    assert check["passed"] is True
    assert check["reconciliation"] == AWAITING_THE_END
    done = api.finalize(run_id)
    assert done["phase"] == "COMPLETED"
    assert done["reconciliation"] == EMPTY_RECONCILIATION


def test_empty_expectations_owe_only_finalize_run(api: RunsApi) -> None:
    run = api.create(expectations=[], run_timeout_ms=1_000)
    assert pairs(run["expectations"]) == [FINALIZE_RUN]
    assert run["expectations"][0]["deadline_ms"] == 1_000 + GRACE_MS
    run_id = api.at(RunPhase.COMPLETED, expectations=[])
    done = api.get(run_id)
    assert done["phase"] == "COMPLETED"
    assert pairs(done["acks"]) == [FINALIZE_RUN]
    assert done["reconciliation"] == EMPTY_RECONCILIATION


def test_denied_authorization_fails_the_run_with_the_decision_recorded(api: RunsApi) -> None:
    run_id = api.create(handler="h")["id"]
    denied = api.authorize(run_id, decision="DENIED", reason="budget exhausted")
    assert denied["phase"] == "FAILED"
    assert moves(denied) == [("CREATED", "FAILED")]
    entry = denied["history"][0]
    assert "DENIED" in entry["reason"]
    assert entry["details"]["decision"] == "DENIED"
    assert "DENIED" in denied["error"]
    assert "budget exhausted" in denied["error"]
    # the clock started at the denial: deadlines are set
    at = parse_time(entry["at"])
    for exp in denied["expectations"]:
        assert parse_time(exp["deadline"]) == at + timedelta(milliseconds=exp["deadline_ms"])
    assert finalize_run_acks(denied) == 1
    assert [a["result_id"] for a in denied["acks"] if a["domain"] == "orchestrator"] == ["FAILED"]

    # any value but GRANTED fails the run, even a near miss
    near_miss = api.create()["id"]
    assert api.authorize(near_miss, decision="granted")["phase"] == "FAILED"


def test_failed_execution_still_goes_through_governance(api: RunsApi) -> None:
    run_id = api.at(RunPhase.EXECUTING)
    checking = api.execution_complete(run_id, success=False, error="handler raised KeyError")
    assert checking["phase"] == "GOVERNANCE_CHECK"
    assert checking["execution_success"] is False
    assert checking["error"] == "handler raised KeyError"
    assert "handler raised KeyError" in checking["history"][-1]["reason"]
    api.ack(run_id, "incidents", "create_incident", result_id="inc-1")
    for domain, action in DOMAIN_PAIRS[1:]:
        api.ack(run_id, domain, action)
    check = api.governance_check(run_id, timeout_ms=1000)
    assert check["passed"] is True
    incidents = api.get(run_id)["incidents"]
    assert [i["incident_id"] for i in incidents] == ["inc-1"]
    failed = api.finalize(run_id, success=False)
    assert failed["phase"] == "FAILED"
    assert moves(failed)[-2:] == [("GOVERNANCE_CHECK", "FINALIZING"), ("FINALIZING", "FAILED")]
    assert failed["error"] == "handler raised KeyError"
    assert finalize_run_acks(failed) == 1
    assert failed["reconciliation"] == EMPTY_RECONCILIATION


def test_finalize_false_needs_no_check(api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    failed = api.finalize(run_id, success=False, error="given up")
    assert failed["phase"] == "FAILED"
    assert failed["error"] == "given up"
    assert moves(failed)[-1][1] == "FAILED"


def test_strict_check_with_missing_acks_fails_the_run(api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    api.ack(run_id, "incidents", "create_incident")
    api.ack(run_id, "logs", "start_trace")
    check = api.governance_check(run_id, timeout_ms=50, require_all_acks=True)
    missing = [["logs", "complete_trace"], ["policies", "evaluate_policy"]]
    assert check["passed"] is False
    assert check["reconciliation"]["missing"] == missing
    assert check["reconciliation"]["status"] == "INCOMPLETE"
    run = check["run"]
    assert run["phase"] == "FAILED"
    assert moves(run)[-1] == ("GOVERNANCE_CHECK", "FAILED")
    for domain, action in missing:
        assert f"{domain}/{action}" in run["error"]
    assert finalize_run_acks(run) == 1
    assert run["governance"]["passed"] is False
    assert api.get(run_id) == run


def test_non_strict_check_reports_and_the_run_can_still_be_finalized(api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    api.ack(run_id, "incidents", "create_incident")
    api.ack(run_id, "policies", "evaluate_policy", error="policy engine unreachable")
    check = api.governance_check(run_id, timeout_ms=50, require_all_acks=False)
    assert check["passed"] is False
    assert check["reconciliation"]["missing"] == [
        ["logs", "complete_trace"],
        ["logs", "start_trace"],
    ]
    assert check["reconciliation"]["failed"] == [["policies", "evaluate_policy"]]
    run = check["run"]
    assert run["phase"] == "GOVERNANCE_CHECK"
    assert run["error"] is None
    assert statuses(run) == {
        ("incidents", "create_incident"): "ACKED",
        ("policies", "evaluate_policy"): "ACKED",
        ("logs", "start_trace"): "MISSING",
        ("logs", "complete_trace"): "MISSING",
        FINALIZE_RUN: "PENDING",
    }
    done = api.finalize(run_id)
    assert done["phase"] == "COMPLETED"
    assert moves(done)[-2:] == [("GOVERNANCE_CHECK", "FINALIZING"), ("FINALIZING", "COMPLETED")]


def test_begin_finalization_then_finalize_passes_finalizing_once(api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK, checked=True)
    assert api.begin_finalization(run_id)["phase"] == "FINALIZING"
    done = api.finalize(run_id)
    assert [to for _, to in moves(done)].count("FINALIZING") == 1
    assert done["phase"] == "COMPLETED"


def test_governance_check_waits_for_acks_that_arrive_later(server: ServerProcess) -> None:
    """The check is sent first and answers passed=true once the last ack lands.

    TestClient serialises requests, so this runs against a real server.
    """
    with server.client() as http:
        api = RunsApi(http)
        run_id = api.at(RunPhase.GOVERNANCE_CHECK)
        with WaitingCheck(server.base_url, run_id) as check:
            for domain, action in DOMAIN_PAIRS[:-1]:
                api.ack(run_id, domain, action)
            # with three of four acks the check keeps waiting: nothing recorded, no answer
            for _ in range(5):
                time.sleep(0.05)
                assert api.get(run_id)["governance"] is None
                assert not check.answered
            last = api.ack(run_id, *DOMAIN_PAIRS[-1])
            check_result = check.answer(45)
        assert check_result["passed"] is True
        assert check_result["reconciliation"] == AWAITING_THE_END
        run = check_result["run"]
        assert run["phase"] == "GOVERNANCE_CHECK"
        assert parse_time(run["governance"]["checked_at"]) >= parse_time(last["at"])
        assert api.finalize(run_id)["phase"] == "COMPLETED"


def test_list_runs_newest_first_with_cursor_and_filters(api: RunsApi) -> None:
    made = []
    for index in range(7):
        run = api.create(tenant_id=f"t{index % 2}", handler=f"h{index % 3}")
        made.append(run["id"])
    api.authorize(made[1])
    api.authorize(made[4])
    api.fail(made[5])

    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        page = api.list(limit=3, cursor=cursor)
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= 3
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [r["id"] for r in seen] == list(reversed(made))
    created = [parse_time(r["created_at"]) for r in seen]
    assert created == sorted(created, reverse=True)
    assert api.list(limit=7)["next_cursor"] is None

    def ids(**query: Any) -> list[str]:
        return [r["id"] for r in api.all_runs(**query)]

    assert ids(phase="AUTHORIZED") == [made[4], made[1]]
    assert ids(phase="FAILED") == [made[5]]
    assert ids(tenant_id="t1") == [made[5], made[3], made[1]]
    assert ids(handler="h2") == [made[5], made[2]]
    assert ids(tenant_id="t0", handler="h0") == [made[6], made[0]]
    assert ids(tenant_id="t1", phase="AUTHORIZED") == [made[1]]
    assert ids(tenant_id="nobody") == []
    # a cursor keeps the filters' order too
    first = api.list(tenant_id="t0", limit=2)
    rest = api.list(tenant_id="t0", limit=2, cursor=first["next_cursor"])
    assert [r["id"] for r in first["items"] + rest["items"]] == [made[6], made[4], made[2], made[0]]


def test_list_runs_default_limit_is_50(api: RunsApi) -> None:
    for _ in range(51):
        api.create()
    page = api.list()
    assert len(page["items"]) == 50
    assert page["next_cursor"] is not None
    assert len(api.list(cursor=page["next_cursor"])["items"]) == 1
    assert len(api.list(limit=500)["items"]) == 51


def test_list_runs_refuses_bad_queries(client: TestClient) -> None:
    for query in (
        {"limit": 0},
        {"limit": 501},
        {"limit": -1},
        {"limit": "ten"},
        {"phase": "RUNNING"},
        {"cursor": "not-a-cursor"},
    ):
        response = client.get("/runs", params=query)
        assert response.status_code == 422, (query, response.text)
        assert response.json()["detail"], query
    assert client.get("/runs", params={"limit": 500}).status_code == 200
    assert client.get("/runs", params={"limit": 1}).status_code == 200


def test_reconciliation_endpoint_reports_now(api: RunsApi) -> None:
    run_id = api.at(RunPhase.EXECUTING)
    api.ack(run_id, "incidents", "create_incident")
    api.ack(run_id, "incidents", "create_incident")
    api.ack(run_id, "search", "index")
    api.ack(run_id, "policies", "evaluate_policy", error="engine down")
    reconciliation = api.call("GET", f"/runs/{run_id}/reconciliation").json()
    assert reconciliation == {
        "status": "INCOMPLETE",
        "missing": [],
        "drift": [["incidents", "create_incident"], ["search", "index"]],
        "invalid": [],
        "failed": [["policies", "evaluate_policy"]],
        "stale": False,
        "pending": [["logs", "complete_trace"], ["logs", "start_trace"], list(FINALIZE_RUN)],
    }
    assert api.get(run_id)["reconciliation"] == reconciliation


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_authorize_can_begin_execution_in_the_same_request(api: RunsApi) -> None:
    run_id = api.create()["id"]
    run = api.authorize(run_id, begin_execution=True)
    assert run["phase"] == "EXECUTING"
    assert moves(run) == [("CREATED", "AUTHORIZED"), ("AUTHORIZED", "EXECUTING")]
    assert run["history"][0]["at"] == run["history"][1]["at"]
    assert api.get(run_id) == run


def test_a_governance_check_can_finalize_the_run_in_the_same_request(api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    api.ack_all(run_id)
    check = api.move(
        run_id, "governance-check", {"timeout_ms": 1, "require_all_acks": True, "finalize": True}
    )
    assert check["passed"] is True
    assert check["reconciliation"]["status"] == "COMPLETE"
    run = check["run"]
    assert run["phase"] == "COMPLETED"
    assert moves(run)[-3:] == [
        ("EXECUTING", "GOVERNANCE_CHECK"),
        ("GOVERNANCE_CHECK", "FINALIZING"),
        ("FINALIZING", "COMPLETED"),
    ]
    assert run["governance"]["passed"] is True
    assert finalize_run_acks(run) == 1
    assert run["reconciliation"] == EMPTY_RECONCILIATION
    assert api.get(run_id) == run


def test_a_check_that_finalizes_a_failed_execution_ends_failed_with_its_error(
    api: RunsApi,
) -> None:
    run_id = api.at(RunPhase.EXECUTING)
    api.execution_complete(run_id, success=False, error="tool raised")
    api.ack_all(run_id)
    run = api.move(run_id, "governance-check", {"timeout_ms": 1, "finalize": True})["run"]
    assert run["phase"] == "FAILED"
    assert run["error"] == "tool raised"
    assert finalize_run_acks(run) == 1
