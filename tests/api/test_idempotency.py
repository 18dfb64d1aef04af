"""Idempotency-Key on every POST (DESIGN section 9): replay, refuse, forget; both backends.

What is counted is what was done: runs created, history entries, acks. Time
passes through the Authority's clock (`Served.clock`), never by sleeping.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from service.api import idempotency
from service.api.auth import ANONYMOUS_ID
from service.api.idempotency import HEADER, fingerprint
from service.model.phases import RunPhase
from service.store.idempotency import STALE_S, Answered, Held, Refusal
from service.store.keys import RUNS_READ, RUNS_WRITE
from service.store.tables import idempotency_keys
from tests.api.gates import Served, replayed, serving
from tests.api.refusals import nothing_changes, refused


@pytest.fixture
def served(migrated_url: str) -> Iterator[Served]:
    with serving(migrated_url) as current:
        yield current


def history_to(run: dict[str, Any]) -> list[str]:
    return [entry["to"] for entry in run["history"]]


def test_the_same_key_and_request_replay_the_first_answer_and_do_nothing_again(
    served: Served,
) -> None:
    body = {"handler": "h", "input": {"n": 1}}
    first = served.post("/runs", body, key="create-1")
    again = served.post("/runs", body, key="create-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["content-type"] == first.headers["content-type"]
    assert replayed(again) and not replayed(first)
    assert served.api.total() == 1
    run_id = first.json()["id"]

    authorized = served.post(f"/runs/{run_id}/authorize", {"decision": "GRANTED"}, "move-1")
    served.api.begin_execution(run_id)
    # the replay is the first answer, as it was then: not a second move, not today's run
    replay = served.post(f"/runs/{run_id}/authorize", {"decision": "GRANTED"}, "move-1")
    assert replay.status_code == 200 and replayed(replay)
    assert replay.json() == authorized.json()
    assert replay.json()["phase"] == "AUTHORIZED"

    ack = {"domain": "incidents", "action": "create_incident", "result_id": "inc-1"}
    answers = [served.post(f"/runs/{run_id}/acks", ack, key="ack-1") for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert answers[1].json() == answers[2].json() == answers[0].json()

    run = served.api.get(run_id)
    assert history_to(run) == ["AUTHORIZED", "EXECUTING"]
    assert [(a["domain"], a["action"]) for a in run["acks"]] == [("incidents", "create_incident")]


def test_the_same_key_with_another_request_is_422_naming_the_key(served: Served) -> None:
    first = served.post("/runs", {"handler": "h"}, key="job-7")
    run_id = first.json()["id"]
    with nothing_changes(served.api):
        for path, body in [
            ("/runs", {"handler": "other"}),  # another body
            (f"/runs/{run_id}/fail", {"error": "x"}),  # another path
        ]:
            answer = refused(served.post(path, body, key="job-7"), 422, "'job-7'", HEADER)
            assert answer.json()["code"] == "idempotency_conflict"
    # the first answer is still the one remembered
    assert served.post("/runs", {"handler": "h"}, key="job-7").json() == first.json()


def test_a_key_whose_first_request_still_runs_is_409_then_replays_its_answer(
    served: Served,
) -> None:
    run_id = served.api.at(RunPhase.GOVERNANCE_CHECK)  # no acks: the check waits them out
    path = f"/runs/{run_id}/governance-check"
    body = {"timeout_ms": 2000}
    first: dict[str, Any] = {}

    def check() -> None:
        first["answer"] = served.post(path, body, key="check-1")

    waiting = threading.Thread(target=check)
    waiting.start()
    try:
        while served.stored("check-1") is not Refusal.IN_PROGRESS:
            assert waiting.is_alive(), first
        busy = refused(served.post(path, body, key="check-1"), 409, "'check-1'", "in progress")
        assert busy.json()["code"] == "idempotency_in_progress"
        assert int(busy.headers["retry-after"]) >= 1
    finally:
        waiting.join()
    answer = first["answer"]
    assert answer.status_code == 200, answer.text
    replay = served.post(path, body, key="check-1")
    assert replayed(replay) and replay.json() == answer.json()


def test_a_key_held_by_a_request_that_died_with_its_server_is_taken_over(
    served: Served,
) -> None:
    body = json.dumps({"handler": "h"}).encode()
    same = fingerprint({"method": "POST", "path": "/runs", "query_string": b""}, body)
    store = served.keys_store
    headers = {"content-type": "application/json"}
    # a request that holds the key, still running (touched now): 409
    assert isinstance(store.begin(ANONYMOUS_ID, "live", same, served.clock()), Held)
    busy = served.http.post("/runs", content=body, headers={**headers, HEADER: "live"})
    refused(busy, 409, "'live'")
    # one nobody touched for STALE_S: its server died mid-request; the next one runs
    died = served.clock() - timedelta(seconds=STALE_S + 1)
    assert isinstance(store.begin(ANONYMOUS_ID, "dead", same, died), Held)
    taken = served.http.post("/runs", content=body, headers={**headers, HEADER: "dead"})
    assert taken.status_code == 201, taken.text
    assert served.api.total() == 1
    assert isinstance(served.stored("dead"), Answered)


def test_a_key_is_forgotten_after_rok_idempotency_ttl_s(migrated_url: str) -> None:
    with serving(migrated_url, idempotency_ttl_s=60) as served:
        first = served.post("/runs", {"handler": "h"}, key="daily")
        served.clock.advance(59)
        assert served.post("/runs", {"handler": "h"}, key="daily").json() == first.json()
        served.clock.advance(2)  # 61 s after the first answer
        later = served.post("/runs", {"handler": "h"}, key="daily")
        assert later.status_code == 201 and not replayed(later)
        assert later.json()["id"] != first.json()["id"]
        assert served.api.total() == 2
        # and remembered again from then on
        assert replayed(served.post("/runs", {"handler": "h"}, key="daily"))


def test_a_5xx_is_not_remembered_so_a_retry_runs_again(migrated_url: str) -> None:
    with serving(migrated_url, raise_server_exceptions=False) as served:
        calls: list[int] = []

        def flaky() -> dict[str, int]:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("the database went away")
            return {"calls": len(calls)}

        served.app.add_api_route("/flaky", flaky, methods=["POST"])
        assert served.post("/flaky", key="retry-me").status_code == 500
        assert served.stored("retry-me") is None
        second = served.post("/flaky", key="retry-me")
        assert second.status_code == 200 and second.json() == {"calls": 2}
        third = served.post("/flaky", key="retry-me")
        assert replayed(third) and third.json() == {"calls": 2}
        assert len(calls) == 2


def test_a_long_request_keeps_its_key_from_going_stale(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency, "TOUCH_EVERY_S", 0.02)
    with serving(migrated_url) as served:

        def held_since() -> datetime:
            query = select(idempotency_keys.c.created_at).where(idempotency_keys.c.key == "slow")
            with served.authority.database.read() as conn:
                since: datetime = conn.execute(query).scalar_one()
            return since

        def slow() -> dict[str, bool]:
            first = held_since()
            deadline = time.monotonic() + 30
            while held_since() == first:  # until the row is touched under us
                assert time.monotonic() < deadline, "never touched"
                time.sleep(0.01)
            return {"touched": True}

        served.app.add_api_route("/slow", slow, methods=["POST"])
        assert served.post("/slow", key="slow").json() == {"touched": True}
        # the answer was stored on the row as last touched
        assert replayed(served.post("/slow", key="slow"))


def test_requests_refused_before_the_app_ran_are_not_remembered(migrated_url: str) -> None:
    with serving(migrated_url, max_body_bytes=2048, rate_limit="3/minute") as served:
        too_large = served.post("/runs", {"input": "x" * 4096}, key="k-413")
        refused(too_large, 413)
        assert served.stored("k-413") is None
        assert served.post("/runs", {"handler": "h"}, key="k-413").status_code == 201
        served.post("/runs", {"handler": "h"}, key="k-2")
        served.post("/runs", {"handler": "h"}, key="k-3")
        refused(served.post("/runs", {"handler": "h"}, key="k-429"), 429)
        assert served.stored("k-429") is None


def test_keys_are_per_principal(migrated_url: str) -> None:
    with serving(migrated_url, auth="required") as served:
        alice, as_alice = served.key(RUNS_WRITE, RUNS_READ)
        bob, as_bob = served.key(RUNS_WRITE, RUNS_READ)
        body = {"handler": "h"}
        first = served.post("/runs", body, "shared", as_alice)
        other = served.post("/runs", body, "shared", as_bob)
        assert first.status_code == other.status_code == 201
        assert first.json()["id"] != other.json()["id"], "bob got alice's answer"
        assert not replayed(other)
        again = served.post("/runs", body, "shared", as_alice)
        assert replayed(again) and again.json()["id"] == first.json()["id"]
        refused(served.post("/runs", {"handler": "x"}, "shared", as_bob), 422, "'shared'")
        assert isinstance(served.stored("shared", alice), Answered)
        assert isinstance(served.stored("shared", bob), Answered)
        assert served.stored("shared") is None  # nothing as the anonymous principal


@pytest.mark.parametrize(
    "value",
    [b"x" * 256, "clé".encode("latin-1"), b"tab\there", b"bell\x07"],
    ids=["256 characters", "not ASCII", "a tab", "a control character"],
)
def test_a_malformed_key_is_422_naming_the_header(served: Served, value: bytes) -> None:
    with nothing_changes(served.api):
        answer = served.http.post("/runs", json={"handler": "h"}, headers={HEADER: value})
        refused(answer, 422, HEADER)
    assert served.stored(value.decode("latin-1")) is None


def test_two_keys_in_one_request_are_422(served: Served) -> None:
    headers = [(HEADER, "a"), (HEADER, "b")]
    with nothing_changes(served.api):
        refused(served.http.post("/runs", json={"handler": "h"}, headers=headers), 422, HEADER)


def test_a_key_of_255_printable_characters_is_accepted(served: Served) -> None:
    key = ("~ !" * 85)[:255]
    assert served.post("/runs", {"handler": "h"}, key=key).status_code == 201
    assert replayed(served.post("/runs", {"handler": "h"}, key=key))


def test_reads_ignore_the_header(served: Served) -> None:
    run_id = served.api.create(handler="h")["id"]
    for _ in range(2):
        answer = served.http.get(f"/runs/{run_id}", headers={HEADER: "read"})
        assert answer.status_code == 200 and not replayed(answer)
    assert served.stored("read") is None


def test_the_body_idempotency_key_stays_an_alias_across_header_keys(served: Served) -> None:
    body = {"handler": "h", "idempotency_key": "body-key"}
    first = served.post("/runs", body, key="header-1")
    second = served.post("/runs", body, key="header-2")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert not replayed(second)


def test_body_idempotency_keys_of_two_tenants_never_collide(served: Served) -> None:
    """Before, tenant "a\\x1fb" with key "c" and tenant "a" with key "b\\x1fc" were one scope."""
    pairs = [
        ("a\x1fb", "c"),
        ("a", "b\x1fc"),
        ("0" * 64, "k"),  # shaped like the digest a \x1f tenant is replaced by
    ]
    ids = set()
    for tenant, key in pairs:
        created = served.api.create(handler="h", tenant_id=tenant, idempotency_key=key)
        ids.add(created["id"])
    assert len(ids) == len(pairs)
    assert served.api.total() == len(pairs)
