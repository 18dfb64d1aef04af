"""Leases an attacker must not be able to bend (DESIGN section 9, Leases), on both backends.

- A heartbeat needs the lease's current token: the worker id alone got a 200
  and the token itself.
- The token is in the claim's answer and the holder's heartbeat answers only.
- A run driven by hand (it left CREATED without a lease) is never claimable:
  it was handed to the next claimer, whose lease then locked its driver out.
- One claim_id sent many times at once leases at most one run (PostgreSQL
  leased up to five of ten).
- `handlers: []` is refused, not read as "no handler".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.authority import Authority
from service.config import Settings
from service.kernel.kernel import create_rok
from service.store.runs import RunFilter
from service.sweeper import Sweeper
from tests.api.conftest import LOCAL_BASE_URL, check_every_run_as_served
from tests.api.refusals import nothing_changes, refused, send
from tests.api.runs_api import RunsApi, expect, parse_time
from tests.support.authorities import open_authority
from tests.support.races import race
from tests.support.server import ServerProcess

LEASE = "X-Lease-Token"
RACERS = 10


def claim(client: TestClient, status: int = 200, **body: Any) -> dict[str, Any]:
    response = expect(client.post("/runs/claim", json={"worker_id": "w1", **body}), status)
    return response.json() if status == 200 else {}


def authority_of(client: TestClient) -> Authority:
    authority: Authority = client.app.state.authority  # type: ignore[attr-defined]
    return authority


@pytest.fixture
def unswept(migrated_url: str) -> Iterator[TestClient]:
    """The app without its background sweeper: a test that moves the clock, or runs
    the sweeper's tick itself, must not race it."""
    settings = Settings(database_url=migrated_url, auth="off")
    with TestClient(create_app(settings, sweep=False), base_url=LOCAL_BASE_URL) as http:
        yield http
        check_every_run_as_served(RunsApi(http))


def move_clock(client: TestClient, to: Any) -> None:
    authority_of(client).clock = lambda: to


# -- 1. heartbeats need the token -----------------------------------------------------


def test_a_heartbeat_without_the_token_is_409_and_shows_no_token(
    client: TestClient, api: RunsApi
) -> None:
    run_id = api.create()["id"]
    lease = claim(client, lease_ms=60_000)["lease"]
    path = f"/runs/{run_id}/heartbeat"
    with nothing_changes(api):
        answer = refused(client.post(path, json={"worker_id": "w1"}), 409, "token")
        assert "lease_token" in answer.json()["detail"]
        assert "X-Lease-Token" in answer.json()["detail"]
        assert lease["token"] not in answer.text
    # the lease was not extended
    shown = api.get(run_id)["lease"]
    assert shown == {"worker_id": "w1", "expires_at": lease["expires_at"]}


def test_a_heartbeat_with_a_stale_token_another_worker_or_an_expired_lease_is_409(
    client: TestClient, api: RunsApi
) -> None:
    run_id = api.create()["id"]
    stale = claim(client, lease_ms=60_000)["lease"]["token"]
    api.fail(run_id, "taken back by an operator")  # the lease and its token are gone
    other = api.create()["id"]
    token = claim(client, lease_ms=60_000)["lease"]["token"]
    path = f"/runs/{other}/heartbeat"
    with nothing_changes(api):
        stale_body = {"worker_id": "w1", "lease_token": stale}
        assert stale not in refused(client.post(path, json=stale_body), 409, "token").text
        for_another = {"worker_id": "w2", "lease_token": token}
        assert token not in refused(client.post(path, json=for_another), 409, "w2").text
        in_header = client.post(path, json={"worker_id": "w2"}, headers={LEASE: token})
        refused(in_header, 409, "w2")
        on_a_finished_run = {"worker_id": "w1", "lease_token": stale}
        refused(client.post(f"/runs/{run_id}/heartbeat", json=on_a_finished_run), 409, "no lease")


def test_a_heartbeat_after_expiry_is_409_even_with_the_token(unswept: TestClient) -> None:
    api = RunsApi(unswept)
    run_id = api.create()["id"]
    lease = claim(unswept, lease_ms=60_000)["lease"]
    move_clock(unswept, parse_time(lease["expires_at"]) + timedelta(seconds=1))
    with nothing_changes(api):
        body = {"worker_id": "w1", "lease_token": lease["token"]}
        answer = refused(unswept.post(f"/runs/{run_id}/heartbeat", json=body), 409, "expired")
        assert lease["token"] not in answer.text


def test_the_holder_s_heartbeat_answers_the_extended_lease_with_its_token(
    client: TestClient, api: RunsApi
) -> None:
    run_id = api.create()["id"]
    lease = claim(client, lease_ms=2000)["lease"]
    path = f"/runs/{run_id}/heartbeat"
    by_body = client.post(
        path, json={"worker_id": "w1", "lease_token": lease["token"], "lease_ms": 60_000}
    )
    beat = expect(by_body, 200).json()
    assert beat["token"] == lease["token"] and beat["worker_id"] == "w1"
    assert parse_time(beat["expires_at"]) > parse_time(lease["expires_at"])
    by_header = client.post(
        path, json={"worker_id": "w1", "lease_ms": 60_000}, headers={LEASE: lease["token"]}
    )
    assert expect(by_header, 200).json()["token"] == lease["token"]


def test_the_token_is_in_no_answer_but_the_claim_and_the_holder_s_heartbeat(
    client: TestClient, api: RunsApi
) -> None:
    run_id = api.create()["id"]
    token = claim(client, lease_ms=60_000)["lease"]["token"]
    header = {LEASE: token}
    answers = [
        client.get(f"/runs/{run_id}"),
        client.get("/runs", params={"limit": 500}),
        client.get(f"/runs/{run_id}/reconciliation"),
        client.post(f"/runs/{run_id}/authorize", json={"decision": "GRANTED"}, headers=header),
        client.post(f"/runs/{run_id}/begin-execution", headers=header),
        client.post(f"/runs/{run_id}/acks", json={"domain": "incidents", "action": "x"}),
        client.post(f"/runs/{run_id}/execution-complete", json={"success": True}, headers=header),
        client.post(f"/runs/{run_id}/governance-check", json={"timeout_ms": 1}, headers=header),
        client.post(f"/runs/{run_id}/authorize", json={"decision": "GRANTED"}),  # a 409
        client.post(f"/runs/{run_id}/finalize", json={"success": False}, headers=header),
        client.get(f"/runs/{run_id}"),
    ]
    for answer in answers:
        assert answer.status_code < 500, answer.text
        assert token not in answer.text, f"{answer.request.url.path} shows the lease token"


# -- 2. a run driven by hand is never claimable ----------------------------------------


def test_a_run_authorized_by_hand_is_never_claimed(client: TestClient, api: RunsApi) -> None:
    driven = api.create(handler="h")["id"]
    started_at_once = api.create(handler="h")["id"]
    api.authorize(driven)
    api.authorize(started_at_once, begin_execution=True)
    with nothing_changes(api):
        claim(client, status=204)
        claim(client, status=204, handlers=["h"])
    # its driver keeps it: every move still needs no token
    api.begin_execution(driven)
    api.execution_complete(driven)
    claim(client, status=204)
    api.ack_all(driven)
    assert api.governance_check(driven)["passed"] is True
    assert api.finalize(driven)["phase"] == "COMPLETED"
    # a waiting run is still handed out
    waiting = api.create(handler="h")["id"]
    assert claim(client, handlers=["h"])["run"]["id"] == waiting


def test_a_leased_run_whose_worker_died_is_claimable_again(unswept: TestClient) -> None:
    client, api = unswept, RunsApi(unswept)
    run_id = api.create(max_attempts=2)["id"]
    # expires well before the run's finalize_run deadline (35 s), which would fail it
    lease = claim(client, worker_id="dead", lease_ms=5_000)["lease"]
    moved = client.post(
        f"/runs/{run_id}/authorize",
        json={"decision": "GRANTED", "begin_execution": True},
        headers={LEASE: lease["token"]},
    )
    assert expect(moved, 200).json()["phase"] == "EXECUTING"
    claim(client, status=204)
    authority = authority_of(client)
    report = Sweeper(authority).tick(parse_time(lease["expires_at"]) + timedelta(seconds=1))
    assert report.released == [run_id] and report.failed_stale == []
    again = claim(client, worker_id="w2")
    assert again["run"]["id"] == run_id and again["run"]["attempt"] == 2
    assert again["run"]["phase"] == "EXECUTING"


# -- 3. one claim_id, many copies at once: at most one run -----------------------------


def test_one_claim_id_sent_ten_times_at_once_leases_one_run(
    authority: Authority, migrated_url: str
) -> None:
    for _ in range(RACERS):
        create_rok(store=authority.store, settings=authority.settings).declare_expectations()
    with contextlib.ExitStack() as stack:
        # each copy its own engine: as separate as replicas can be in one process
        replicas = [
            stack.enter_context(contextlib.closing(open_authority(migrated_url)))
            for _ in range(RACERS)
        ]
        now = authority.clock()
        outcomes = race(
            [partial(r.leases.claim, "w1", 60_000, None, now, claim_id="once") for r in replicas]
        )
    assert [kind for kind, _ in outcomes] == ["ok"] * RACERS, outcomes
    answers = {(record.id, lease.token) for _, (record, lease) in outcomes}
    assert len(answers) == 1, answers
    ((run_id, token),) = answers
    leased = [r for r in _all_records(authority) if r.row.lease is not None]
    assert [(r.id, r.row.lease and r.row.lease.token) for r in leased] == [(run_id, token)]


def test_one_claim_id_sent_ten_times_at_once_over_http_leases_one_run(
    server: ServerProcess,
) -> None:
    with server.client() as http:
        api = RunsApi(http)
        for _ in range(RACERS):
            api.create()
    clients = [httpx.Client(base_url=server.base_url, timeout=60) for _ in range(RACERS)]
    try:
        body = {"worker_id": "w1", "lease_ms": 60_000, "claim_id": "once-over-http"}
        outcomes = race([partial(c.post, "/runs/claim", json=body) for c in clients])
    finally:
        for c in clients:
            c.close()
    answers = []
    for kind, response in outcomes:
        assert kind == "ok", response
        got = expect(response, 200).json()
        answers.append((got["run"]["id"], got["lease"]["token"]))
    assert len(set(answers)) == 1, answers
    with server.client() as http:
        runs = RunsApi(http).all_runs()
    assert [r["id"] for r in runs if r["lease"] is not None] == [answers[0][0]]


def test_a_claim_id_whose_lease_expired_claims_afresh(unswept: TestClient) -> None:
    client, api = unswept, RunsApi(unswept)
    expired, spare = api.create()["id"], api.create()["id"]
    first = claim(client, claim_id="again", lease_ms=60_000)
    assert first["run"]["id"] == expired
    move_clock(client, parse_time(first["lease"]["expires_at"]) + timedelta(seconds=1))
    fresh = claim(client, claim_id="again", lease_ms=60_000)
    assert fresh["run"]["id"] == spare
    assert fresh["lease"]["token"] != first["lease"]["token"]
    # the expired lease is the sweeper's to take back; it stays as it was
    assert api.get(expired)["lease"] == {
        "worker_id": "w1",
        "expires_at": first["lease"]["expires_at"],
    }


# -- 4. handlers: [] ------------------------------------------------------------------


def test_an_empty_handlers_list_is_422_naming_the_field(client: TestClient, api: RunsApi) -> None:
    api.create(handler="h")
    api.create()
    with nothing_changes(api):
        answer = refused(
            send(client, "POST", "/runs/claim", {"worker_id": "w1", "handlers": []}),
            422,
            "handlers",
        )
        assert "at least 1" in answer.text
    assert claim(client, handlers=["h"])["run"]["handler"] == "h"


def _all_records(authority: Authority) -> list[Any]:
    records, _ = authority.store.list(RunFilter(), 500, None)
    return records
