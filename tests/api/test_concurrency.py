"""Races over real HTTP: 50 clients released together against one real server process.

Counts side effects, never time: each run ends exactly once, has exactly one
finalize_run ack, and exactly one of the moves that could end it won.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx

from service.model.phases import TERMINAL_PHASES, RunPhase
from tests.api.runs_api import FINALIZE_RUN, RunsApi, assert_run_valid, pairs
from tests.support import races
from tests.support.server import ServerProcess

CLIENTS = 50
RUNS = 10


@dataclass(frozen=True)
class Call:
    run_id: str
    name: str
    path: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    call: Call
    status: int
    body: Any


def race(server: ServerProcess, calls: list[Call]) -> list[Answer]:
    """Each call from its own client, connected beforehand; all released by one barrier."""
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(server.client()) for _ in calls]
        for http in clients:
            http.get("/healthz")  # connect before the race, so the race is the request

        def send(http: httpx.Client, call: Call) -> Answer:
            response = http.post(call.path, json=call.body)
            body = response.json() if response.content else None
            return Answer(call, response.status_code, body)

        outcomes = races.race([partial(send, h, c) for h, c in zip(clients, calls, strict=True)])
    failures = [value for kind, value in outcomes if kind != "ok"]
    assert not failures, f"{len(failures)} clients failed, first: {failures[0]!r}"
    return [value for _, value in outcomes]


def assert_no_server_errors(answers: list[Answer], server: ServerProcess) -> None:
    statuses = Counter(a.status for a in answers)
    assert set(statuses) <= {200, 201, 409}, f"{statuses}; server log:\n{server.log_tail()}"
    assert "Traceback" not in server.log_text(), server.log_tail(80)


def test_racing_finalize_fail_and_acks_end_each_run_exactly_once(server: ServerProcess) -> None:
    with server.client() as http:
        api = RunsApi(http)
        run_ids = [api.at(RunPhase.GOVERNANCE_CHECK, checked=True) for _ in range(RUNS)]

    def calls_for(run_id: str) -> list[Call]:
        moves: list[tuple[str, str, dict[str, Any]]] = [
            ("finalize", "finalize", {"success": True}),
            ("finalize-failed", "finalize", {"success": False, "error": "lost the race"}),
            ("fail", "fail", {"error": "operator cancelled"}),
            ("ack", "acks", {"domain": "search", "action": "index", "result_id": "ix-1"}),
            ("ack", "acks", {"domain": "incidents", "action": "create_incident"}),
        ]
        return [Call(run_id, name, f"/runs/{run_id}/{path}", body) for name, path, body in moves]

    calls = [call for run_id in run_ids for call in calls_for(run_id)]
    assert len(calls) == CLIENTS
    answers = race(server, calls)
    assert_no_server_errors(answers, server)

    with server.client() as http:
        api = RunsApi(http)
        for run_id in run_ids:
            mine = [a for a in answers if a.call.run_id == run_id]
            enders = [a for a in mine if a.call.name != "ack"]
            winners = [a for a in enders if a.status == 200]
            assert len(winners) == 1, [(a.call.name, a.status) for a in enders]
            assert all(a.status == 409 for a in enders if a not in winners)
            assert all(a.status == 201 for a in mine if a.call.name == "ack")

            run = api.get(run_id)
            assert_run_valid(run)
            ends = [h for h in run["history"] if RunPhase(h["to"]) in TERMINAL_PHASES]
            assert len(ends) == 1, run["history"]
            assert pairs(run["acks"]).count(FINALIZE_RUN) == 1
            expected_phase = "COMPLETED" if winners[0].call.name == "finalize" else "FAILED"
            assert run["phase"] == expected_phase
            assert winners[0].body["phase"] == expected_phase
            # the loser's 409 names the terminal phase it met
            for loser in enders:
                if loser is not winners[0]:
                    assert loser.body["current_phase"] in ("COMPLETED", "FAILED")
            # both acks were kept: before the end as evidence, after it as late drift
            assert pairs(run["acks"]).count(("search", "index")) == 1
            assert pairs(run["acks"]).count(("incidents", "create_incident")) == 2


def test_racing_creates_with_one_key_or_one_run_id_make_one_run(server: ServerProcess) -> None:
    run_id = str(uuid.uuid4())
    keyed = {"tenant_id": "acme", "handler": "h", "idempotency_key": "the-one"}
    calls = [Call("keyed", "create", "/runs", keyed) for _ in range(CLIENTS // 2)]
    calls += [Call(run_id, "create", "/runs", {"run_id": run_id}) for _ in range(CLIENTS // 2)]
    answers = race(server, calls)
    assert_no_server_errors(answers, server)

    by_key = [a for a in answers if a.call.run_id == "keyed"]
    assert Counter(a.status for a in by_key) == {201: 1, 200: len(by_key) - 1}
    assert len({a.body["id"] for a in by_key}) == 1

    by_id = [a for a in answers if a.call.run_id == run_id]
    assert Counter(a.status for a in by_id) == {201: 1, 409: len(by_id) - 1}

    with server.client() as http:
        assert RunsApi(http).total() == 2


def test_racing_acks_are_all_kept(server: ServerProcess) -> None:
    """50 domains ack one run at once while a governance check waits for them."""
    expectations = [{"domain": f"d{i}", "action": "a"} for i in range(CLIENTS - 1)]
    with server.client() as http:
        api = RunsApi(http)
        run_id = api.at(RunPhase.GOVERNANCE_CHECK, expectations=expectations)

    calls = [
        Call(run_id, "ack", f"/runs/{run_id}/acks", {"domain": e["domain"], "action": "a"})
        for e in expectations
    ]
    calls.append(
        Call(
            run_id,
            "check",
            f"/runs/{run_id}/governance-check",
            {"timeout_ms": 30_000, "require_all_acks": True},
        )
    )
    answers = race(server, calls)
    assert_no_server_errors(answers, server)
    check = next(a for a in answers if a.call.name == "check")
    assert check.status == 200
    assert check.body["passed"] is True, check.body["reconciliation"]
    with server.client() as http:
        run = RunsApi(http).get(run_id)
    assert len(run["acks"]) == CLIENTS - 1
    assert {e["status"] for e in run["expectations"] if e["domain"] != "orchestrator"} == {"ACKED"}
