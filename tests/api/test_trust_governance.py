"""Governance an attacker must not be able to skip or rewrite (DESIGN sections 2 and 9),
on both backends.

- `ungoverned-outcome` made a fresh run COMPLETED with no authorization and
  no check on a service with ROK_ENABLED=true, and turned a failed execution
  into a success; a pool with ROK_ENABLED=false ran against such a service.
- The verdict a governance check records never changes; acks after it are late.
- A run with no ack at all reported its reconciliation COMPLETE.
- An ack's details could replace an incident's id, and a later incidents ack
  could stand in for the one the sweeper recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.authority import Authority
from service.config import Settings
from service.model.phases import RunPhase
from service.sweeper import Sweeper
from service.worker.cli import main as worker_main
from service.worker.pool import WorkerPool
from service.worker.startup import GovernedServiceError
from tests.api.conftest import GOVERNANCE_TIMEOUT_MS, LOCAL_BASE_URL, check_every_run_as_served
from tests.api.refusals import nothing_changes, refused
from tests.api.runs_api import DOMAIN_PAIRS, FINALIZE_RUN, RunsApi, expect, pairs
from tests.support.server import ServerProcess, running_server

INCIDENT = ("incidents", "create_incident")


@pytest.fixture
def ungoverned(migrated_url: str) -> Iterator[TestClient]:
    """The app of a service started with ROK_ENABLED=false."""
    settings = Settings(
        database_url=migrated_url,
        governance_timeout_ms=GOVERNANCE_TIMEOUT_MS,
        auth="off",
        rok_enabled=False,
    )
    with TestClient(create_app(settings), base_url=LOCAL_BASE_URL) as http:
        yield http
        check_every_run_as_served(RunsApi(http))


def ungoverned_outcome(client: TestClient, run_id: str, **body: Any) -> Any:
    return client.post(f"/runs/{run_id}/ungoverned-outcome", json=body)


# -- 5. the ungoverned outcome, and pools that would use it -----------------------------


def test_a_governing_service_refuses_the_ungoverned_outcome_naming_rok_enabled(
    client: TestClient, api: RunsApi
) -> None:
    fresh = api.create()["id"]
    failed_execution = api.at(RunPhase.EXECUTING)
    api.execution_complete(failed_execution, success=False, error="tool raised")
    with nothing_changes(api):
        for run_id in (fresh, failed_execution):
            for success in (True, False):
                answer = refused(ungoverned_outcome(client, run_id, success=success), 409)
                detail = answer.json()["detail"]
                assert "ROK_ENABLED" in detail and "governance-check" in detail, detail
    assert api.get(fresh)["phase"] == "CREATED"
    assert api.get(failed_execution)["phase"] == "GOVERNANCE_CHECK"


def test_an_ungoverned_service_never_turns_a_failed_execution_into_success(
    ungoverned: TestClient,
) -> None:
    api = RunsApi(ungoverned)
    fresh = api.create()["id"]
    done = expect(ungoverned_outcome(ungoverned, fresh, success=True), 200).json()
    assert done["phase"] == "COMPLETED" and done["governance"] is None

    run_id = api.at(RunPhase.EXECUTING)
    api.execution_complete(run_id, success=False, error="tool raised")
    with nothing_changes(api):
        answer = refused(ungoverned_outcome(ungoverned, run_id, success=True), 409, "failed")
        assert "success=false" in answer.json()["detail"]
    failed = expect(ungoverned_outcome(ungoverned, run_id, success=False), 200).json()
    assert failed["phase"] == "FAILED" and failed["error"] == "tool raised"
    assert failed["execution_success"] is False


def test_healthz_says_whether_the_service_governs(
    client: TestClient, ungoverned: TestClient
) -> None:
    assert expect(client.get("/healthz"), 200).json()["rok_enabled"] is True
    assert expect(ungoverned.get("/healthz"), 200).json()["rok_enabled"] is False


def test_an_ungoverned_pool_stops_at_start_against_a_governing_service(
    server: ServerProcess,
) -> None:
    with server.client() as http:
        run_id = RunsApi(http).create(handler="job")["id"]
    pool = WorkerPool(server.base_url, {"job": lambda ctx: "ok"}, rok_enabled=False)
    with pytest.raises(GovernedServiceError, match="ROK_ENABLED"):
        pool.run(timeout_s=30)
    assert pool.handled == 0
    with server.client() as http:
        run = RunsApi(http).get(run_id)
    assert run["phase"] == "CREATED" and run["lease"] is None and run["history"] == []


def test_rok_worker_with_rok_enabled_false_exits_non_zero_against_a_governing_service(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROK_ENABLED", "false")
    argv = ["worker", "--app", "tests.worker.test_cli:handlers", "--no-domains"]
    code = worker_main([*argv, "--url", server.base_url], lambda rules: [])
    assert code != 0
    error = capsys.readouterr().err
    assert "ROK_ENABLED" in error and server.base_url in error, error


def test_an_ungoverned_pool_runs_against_an_ungoverned_service(migrated_url: str) -> None:
    with running_server(migrated_url, {"ROK_ENABLED": "false"}) as ungoverned_server:
        with ungoverned_server.client() as http:
            run_id = RunsApi(http).create(handler="job")["id"]
        pool = WorkerPool(
            ungoverned_server.base_url,
            {"job": lambda ctx: "ok"},
            rok_enabled=False,
            claim_wait_ms=200,
        )
        results = pool.run_until(1, timeout_s=30)
        assert [r.run_id for r in results] == [run_id]
        with ungoverned_server.client() as http:
            assert RunsApi(http).get(run_id)["phase"] == "COMPLETED"


# -- 6. the recorded verdict never changes -----------------------------------------------


def test_a_second_check_answers_the_recorded_verdict_and_writes_nothing(
    client: TestClient, api: RunsApi
) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    for pair in DOMAIN_PAIRS[1:]:
        api.ack(run_id, *pair)
    first = api.governance_check(run_id)
    assert first["passed"] is False and first["reconciliation"]["missing"] == [list(INCIDENT)]
    recorded = first["run"]["governance"]
    with nothing_changes(api):
        again = api.governance_check(run_id, timeout_ms=60_000)  # nothing left to wait for
        assert (again["passed"], again["reconciliation"]) == (False, first["reconciliation"])
        assert again["run"]["governance"] == recorded

    # the missing evidence arrives after the verdict: kept, late, drift; the verdict stays
    late = api.ack(run_id, *INCIDENT, result_id="inc-late")
    assert late["late"] is True
    run = api.get(run_id)
    assert run["governance"] == recorded
    assert [a["late"] for a in run["acks"] if (a["domain"], a["action"]) == INCIDENT] == [True]
    live = run["reconciliation"]
    assert list(INCIDENT) in live["drift"] and list(INCIDENT) in live["missing"]
    assert live["status"] == "INCOMPLETE"
    third = api.governance_check(run_id)
    assert (third["passed"], third["reconciliation"]) == (False, first["reconciliation"])
    assert third["run"]["governance"] == recorded


def test_an_ack_after_a_passed_verdict_is_late_drift(client: TestClient, api: RunsApi) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK, checked=True)
    recorded = api.get(run_id)["governance"]
    assert recorded["passed"] is True
    again = api.ack(run_id, *INCIDENT, result_id="inc-2", details={"summary": "second thoughts"})
    assert again["late"] is True
    run = api.get(run_id)
    assert run["governance"] == recorded  # still passed, still COMPLETE as recorded
    assert run["reconciliation"]["drift"] == [list(INCIDENT)]
    assert run["reconciliation"]["status"] == "INCOMPLETE"
    check = api.governance_check(run_id)
    assert check["passed"] is True and check["reconciliation"] == recorded["reconciliation"]


# -- 7. no ack yet is PENDING, never COMPLETE --------------------------------------------


def test_a_run_with_no_ack_is_pending_not_complete(client: TestClient, api: RunsApi) -> None:
    fresh = api.create()
    every_pair = sorted([*DOMAIN_PAIRS, FINALIZE_RUN])
    assert fresh["reconciliation"]["status"] == "PENDING"
    assert fresh["reconciliation"]["pending"] == [list(p) for p in every_pair]
    assert fresh["reconciliation"]["missing"] == []
    live = expect(client.get(f"/runs/{fresh['id']}/reconciliation"), 200).json()
    assert live == fresh["reconciliation"]
    (summary,) = api.list()["items"]
    assert summary["reconciliation_status"] == "PENDING"

    # some evidence in, some not: still PENDING
    executing = api.at(RunPhase.EXECUTING)
    api.ack(executing, *INCIDENT)
    partly = api.get(executing)["reconciliation"]
    assert partly["status"] == "PENDING" and list(INCIDENT) not in partly["pending"]

    # only finalize_run owed, awaiting the end of the run: nothing is pending evidence
    bare = api.create(expectations=[])["reconciliation"]
    assert bare["status"] == "COMPLETE" and bare["pending"] == [list(FINALIZE_RUN)]


# -- 10. incident ids ---------------------------------------------------------------------


def test_an_ack_s_details_never_replace_its_incident_id(client: TestClient, api: RunsApi) -> None:
    run_id = api.at(RunPhase.EXECUTING)
    details = {"incident_id": "inc-forged", "summary": "tool raised"}
    api.ack(run_id, *INCIDENT, result_id="inc-real", details=details)
    (incident,) = api.get(run_id)["incidents"]
    assert incident["incident_id"] == "inc-real"
    assert incident["summary"] == "tool raised"


def test_the_sweeper_s_stale_incident_stays_as_it_recorded_it(
    client: TestClient, api: RunsApi
) -> None:
    run_id = api.at(RunPhase.EXECUTING, run_timeout_ms=1_000)
    authority: Authority = client.app.state.authority  # type: ignore[attr-defined]
    deadline = api.get(run_id)["expectations"][-1]["deadline"]
    assert deadline is not None
    report = Sweeper(authority).tick(authority.clock() + timedelta(hours=1))
    assert report.failed_stale == [run_id]
    stale = api.get(run_id)
    (opened,) = [a for a in stale["acks"] if (a["domain"], a["action"]) == INCIDENT]
    assert opened["late"] is False and opened["details"]["opened_by"] == "rok sweeper"
    (incident,) = stale["incidents"]
    assert incident["incident_id"] == opened["result_id"]

    forged = {"incident_id": "inc-forged", "opened_by": "someone else", "kind": "manual"}
    later = api.ack(run_id, *INCIDENT, result_id="inc-other", details=forged)
    assert later["late"] is True
    run = api.get(run_id)
    assert run["acks"][: len(stale["acks"])] == stale["acks"]  # what the sweeper wrote, as is
    assert run["incidents"][0] == incident
    assert pairs(run["acks"]).count(INCIDENT) == 2
    assert run["reconciliation"]["status"] == "STALE"
    assert list(INCIDENT) in run["reconciliation"]["drift"]
    assert run["governance"] == stale["governance"]
