"""GET /metrics: exact values after a scripted set of runs, on both backends.

The script: six runs (one completed, one denied, one that fails its check, one
claimed whose lease the sweeper finds expired, one waiting, one executing),
two claims (a hit, then an empty queue) and one sweeper tick. Every counter,
histogram count and the by-phase gauge must say exactly what happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from service.api.observability import Metrics
from service.authority import Authority
from service.config import Settings
from service.model.phases import RunPhase
from service.sweeper import Sweeper
from tests.api.conftest import LOCAL_BASE_URL
from tests.api.runs_api import RunsApi, expect
from tests.support.authorities import checked_authority

RUN_ID = "5f0c7a51-5a7e-4b8e-9d7c-2b7e0c4d9a11"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ALLOWED_LABELS = {
    "from_phase",
    "to_phase",
    "phase",
    "verdict",
    "status",
    "result",
    "action",
    "outcome",
    "method",
    "route",
    "le",
    "version",
    "backend",
}


def scrape(http: TestClient) -> Samples:
    response = expect(http.get("/metrics"), 200)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("rok_"), family.name
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def authority(migrated_url: str) -> Iterator[Authority]:
    with checked_authority(migrated_url, auth="off") as current:
        yield current


def serve(authority: Authority) -> tuple[FastAPI, TestClient]:
    app = create_app(authority=authority, sweep=False)
    return app, TestClient(app, base_url=LOCAL_BASE_URL)


def claim(http: TestClient, status: int) -> Any:
    body = {"worker_id": "w1", "lease_ms": 1000, "wait_ms": 0}
    return expect(http.post("/runs/claim", json=body), status)


def test_metrics_count_exactly_what_a_scripted_set_of_runs_did(authority: Authority) -> None:
    _, client = serve(authority)
    with client as http:
        api = RunsApi(http)
        lost = api.create(max_attempts=2)["id"]  # claimed, then its worker is lost
        assert claim(http, 200).json()["run"]["id"] == lost
        claim(http, 204)  # the queue is empty: the only waiting run is leased
        api.at(RunPhase.COMPLETED)
        denied = api.create()["id"]
        assert api.authorize(denied, "DENIED")["phase"] == "FAILED"
        unchecked = api.at(RunPhase.GOVERNANCE_CHECK)  # no acks: the check does not pass
        assert api.governance_check(unchecked)["passed"] is False
        api.fail(unchecked)
        api.at(RunPhase.CREATED)
        api.at(RunPhase.EXECUTING)
        report = Sweeper(authority).tick(authority.clock() + timedelta(seconds=5))
        assert report.released == [lost]

        samples = scrape(http)

    moves = {
        ("CREATED", "AUTHORIZED"): 3,
        ("CREATED", "FAILED"): 1,
        ("AUTHORIZED", "EXECUTING"): 3,
        ("AUTHORIZED", "FAILED"): 0,
        ("EXECUTING", "GOVERNANCE_CHECK"): 2,
        ("EXECUTING", "FAILED"): 0,
        ("GOVERNANCE_CHECK", "FINALIZING"): 1,
        ("GOVERNANCE_CHECK", "FAILED"): 1,
        ("FINALIZING", "COMPLETED"): 1,
        ("FINALIZING", "FAILED"): 0,
        ("CREATED", "CREATED"): 1,  # the attempt entry of the released run
    }
    transitions = {
        (dict(labels)["from_phase"], dict(labels)["to_phase"]): count
        for (name, labels), count in samples.items()
        if name == "rok_run_transitions_total"
    }
    assert transitions == moves
    assert value(samples, "rok_runs_created_total") == 6
    assert value(samples, "rok_governance_checks_total", verdict="passed") == 1
    assert value(samples, "rok_governance_checks_total", verdict="failed") == 1
    assert value(samples, "rok_reconciliations_total", status="COMPLETE") == 1
    assert value(samples, "rok_reconciliations_total", status="INCOMPLETE") == 1
    assert value(samples, "rok_reconciliations_total", status="STALE") == 0
    assert value(samples, "rok_governance_wait_seconds_count") == 2
    assert value(samples, "rok_evidence_lag_seconds_count") == 1  # the run without acks has none
    assert value(samples, "rok_evidence_lag_seconds_sum") >= 0
    assert value(samples, "rok_claims_total", result="hit") == 1
    assert value(samples, "rok_claims_total", result="empty") == 1
    assert value(samples, "rok_lease_expiries_total") == 1
    assert value(samples, "rok_sweeper_actions_total", action="released") == 1
    assert value(samples, "rok_sweeper_actions_total", action="failed_worker_lost") == 0
    assert value(samples, "rok_sweeper_actions_total", action="failed_stale") == 0
    assert value(samples, "rok_webhook_deliveries_total", outcome="delivered") == 0
    by_phase = {
        dict(labels)["phase"]: count
        for (name, labels), count in samples.items()
        if name == "rok_runs_by_phase"
    }
    assert by_phase == {
        "CREATED": 2,  # the released run and the waiting one
        "AUTHORIZED": 0,
        "EXECUTING": 1,
        "GOVERNANCE_CHECK": 0,
        "FINALIZING": 0,
    }
    assert value(samples, "rok_database_up") == 1
    # requests by route template: four authorize calls (three granted, one denied)
    authorize = {"method": "POST", "route": "/runs/{run_id}/authorize", "status": "200"}
    assert value(samples, "rok_http_request_duration_seconds_count", **authorize) == 4
    claims = {"method": "POST", "route": "/runs/claim"}
    assert value(samples, "rok_http_request_duration_seconds_count", **claims, status="204") == 1


def test_no_label_holds_a_run_id_or_a_raw_path(authority: Authority) -> None:
    _, client = serve(authority)
    with client as http:
        api = RunsApi(http)
        run_ids = [api.at(RunPhase.COMPLETED, tenant_id="acme") for _ in range(2)]
        expect(http.get("/no/such/path"), 404)
        samples = scrape(http)
    names = {name for name, _ in samples}
    assert all(name.startswith("rok_") for name in names)
    for _, labels in samples:
        for label, text in labels:
            assert label in ALLOWED_LABELS, label
            assert not any(run_id in text for run_id in run_ids), text
            assert "acme" not in text
    routes = {dict(labels).get("route") for _, labels in samples} - {None}
    assert "/runs/{run_id}" in routes
    assert "unmatched" in routes  # the unknown path, not its text


def test_each_app_counts_its_own_runs_and_both_read_the_same_phase_counts(
    authority: Authority, migrated_url: str
) -> None:
    """Two replicas on one database: counters per process, the gauge from the database."""
    with checked_authority(migrated_url, auth="off") as other_authority:
        _, first = serve(authority)
        _, second = serve(other_authority)
        with first, second:
            RunsApi(first).at(RunPhase.EXECUTING)
            mine, theirs = scrape(first), scrape(second)
    assert value(mine, "rok_runs_created_total") == 1
    assert value(theirs, "rok_runs_created_total") == 0
    assert value(mine, "rok_runs_by_phase", phase="EXECUTING") == 1
    assert value(theirs, "rok_runs_by_phase", phase="EXECUTING") == 1


def test_an_app_stops_counting_when_its_lifespan_ends(authority: Authority) -> None:
    app, client = serve(authority)
    with client as http:
        RunsApi(http).create()
    assert not authority.store.observers
    RunsApi(TestClient(app, base_url=LOCAL_BASE_URL)).create()  # no lifespan: not counted
    metrics: Metrics = app.state.metrics
    assert value(parse(metrics.exposition().decode()), "rok_runs_created_total") == 1


def test_webhook_deliveries_are_counted_by_outcome(authority: Authority) -> None:
    _, client = serve(authority)
    with client as http:
        observers = authority.store.observers
        observers.webhook_delivered("delivered")
        observers.webhook_delivered("failed")
        observers.webhook_delivered("failed")
        samples = scrape(http)
        metrics: Metrics = http.app.state.metrics  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="'lost' is not one of"):
            metrics.webhook_delivered("lost")
    assert value(samples, "rok_webhook_deliveries_total", outcome="delivered") == 1
    assert value(samples, "rok_webhook_deliveries_total", outcome="failed") == 2


def test_a_failing_observer_never_fails_the_move(authority: Authority) -> None:
    from service.store.observers import Committed, StoreObserver

    class Broken(StoreObserver):
        def committed(self, change: Committed) -> None:
            raise RuntimeError("a broken counter")

    _, client = serve(authority)
    with client as http:
        authority.store.observers.add(Broken())
        api = RunsApi(http)
        run_id = api.create()["id"]
        assert api.authorize(run_id)["phase"] == "AUTHORIZED"
        samples = scrape(http)
    moved = {"from_phase": "CREATED", "to_phase": "AUTHORIZED"}
    assert value(samples, "rok_run_transitions_total", **moved) == 1


def test_a_request_refused_before_routing_is_labelled_with_its_route_template(
    sqlite_migrated_url: str,
) -> None:
    """The auth gate answers 401 before the router runs: the template is matched for it."""
    with TestClient(
        create_app(Settings(database_url=sqlite_migrated_url), sweep=False),
        base_url="http://rok.test",
    ) as http:
        expect(http.get(f"/runs/{RUN_ID}"), 401)
        expect(http.post(f"/runs/{RUN_ID}/authorize", json={}), 401)
        samples = scrape(http)  # /metrics needs no key
    count = "rok_http_request_duration_seconds_count"
    assert value(samples, count, method="GET", route="/runs/{run_id}", status="401") == 1
    moved = {"method": "POST", "route": "/runs/{run_id}/authorize", "status": "401"}
    assert value(samples, count, **moved) == 1
