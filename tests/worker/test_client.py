"""The API client's retry rules, against a scripted fake service (httpx.MockTransport).

What matters is counted: how many times each request reached the "service",
and whether a request that may have landed was ever applied twice.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from service.worker.acks import AckChannel
from service.worker.api_errors import Conflict, RunMissing, ServiceUnavailable
from service.worker.client import RokClient
from service.worker.retries import Backoff

RUN_ID = "6f1c9f5e-8d7a-4f55-9a43-4b9d0a0c2f11"
FAST = Backoff(first_s=0.001, cap_s=0.002)

Script = Callable[[httpx.Request], httpx.Response]


class FakeService:
    """Routes requests to a script and counts them by (method, path)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.calls: Counter[tuple[str, str]] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls[(request.method, request.url.path)] += 1
        return self.script(request)


def run(coro_factory: Callable[[RokClient], Any], service: FakeService, **options: Any) -> Any:
    async def main() -> Any:
        transport = httpx.MockTransport(service)
        async with RokClient(
            "http://rok.test", transport=transport, backoff=FAST, **options
        ) as client:
            return await coro_factory(client)

    return asyncio.run(main())


def run_json(phase: str, acks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": RUN_ID, "phase": phase, "acks": acks or [], "expectations": []}


def test_a_5xx_or_a_refused_connection_is_retried_until_it_succeeds() -> None:
    posts: Iterator[str | int] = iter(["refuse", 503, 500, 200])
    state = {"phase": "AUTHORIZED"}

    def script(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # the read-back after an ambiguous 5xx: not applied
            return httpx.Response(200, json=run_json(state["phase"]))
        answer = next(posts)
        if answer == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        if answer == 200:
            state["phase"] = "EXECUTING"
            return httpx.Response(200, json=run_json("EXECUTING"))
        return httpx.Response(int(answer), json={"detail": "database is locked"})

    service = FakeService(script)
    result = run(lambda c: c.begin_execution(RUN_ID, "token"), service)

    assert result["phase"] == "EXECUTING"
    assert service.calls[("POST", f"/runs/{RUN_ID}/begin-execution")] == 4
    assert service.calls[("GET", f"/runs/{RUN_ID}")] == 2, "read back after each 5xx"


def test_a_409_is_never_retried_and_names_the_phase() -> None:
    def script(request: httpx.Request) -> httpx.Response:
        body = {"detail": "lease rejected", "current_phase": "FAILED"}
        return httpx.Response(409, json=body)

    service = FakeService(script)
    with pytest.raises(Conflict) as raised:
        run(lambda c: c.execution_complete(RUN_ID, "token", True), service)

    assert raised.value.current_phase == "FAILED"
    assert sum(service.calls.values()) == 1


def test_a_finalize_whose_response_was_lost_is_not_sent_again() -> None:
    state = {"phase": "GOVERNANCE_CHECK"}

    def script(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=run_json(state["phase"]))
        state["phase"] = "COMPLETED"  # applied, then the connection dropped
        raise httpx.ReadError("connection reset", request=request)

    service = FakeService(script)
    result = run(lambda c: c.finalize(RUN_ID, "token", True), service)

    assert result["phase"] == "COMPLETED"
    assert service.calls[("POST", f"/runs/{RUN_ID}/finalize")] == 1


def test_a_finalize_resent_into_a_409_accepts_the_terminal_run() -> None:
    """The first send timed out but landed after the read-back looked: the resend
    meets a terminal run without a lease (409), which is the answer, not a loss."""
    state: dict[str, str | int] = {"phase": "GOVERNANCE_CHECK", "posts": 0}

    def script(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=run_json(str(state["phase"])))
        state["posts"] = int(state["posts"]) + 1
        if state["posts"] == 1:
            raise httpx.ReadTimeout("no answer yet", request=request)
        state["phase"] = "COMPLETED"  # the slow first send landed meanwhile
        detail = "lease on run rejected: the run holds no lease; the token is stale"
        return httpx.Response(409, json={"detail": detail})

    service = FakeService(script)
    result = run(lambda c: c.finalize(RUN_ID, "token", True), service)

    assert result["phase"] == "COMPLETED"
    assert service.calls[("POST", f"/runs/{RUN_ID}/finalize")] == 2


def test_a_check_that_finalized_but_whose_answer_was_lost_is_read_back() -> None:
    """A check with finalize ends the run: sent again, it would meet a terminal run
    (409). The read-back shows the run ended with its check recorded: that is the answer."""
    check = {"passed": True, "checked_at": "2026-11-28T00:00:00Z", "reconciliation": {"x": 1}}
    state: dict[str, Any] = {"phase": "GOVERNANCE_CHECK", "governance": None}

    def script(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={**run_json(state["phase"]), **state})
        assert json.loads(request.content)["finalize"] is True
        state.update(phase="COMPLETED", governance=check)  # applied, then the answer was lost
        raise httpx.ReadError("connection reset", request=request)

    service = FakeService(script)
    result = run(
        lambda c: c.governance_check(RUN_ID, "token", 1000, require_all_acks=True, finalize=True),
        service,
    )

    assert result["passed"] is True
    assert result["reconciliation"] == {"x": 1}
    assert result["run"]["phase"] == "COMPLETED"
    assert service.calls[("POST", f"/runs/{RUN_ID}/governance-check")] == 1


def test_a_plain_check_whose_answer_was_lost_is_sent_again() -> None:
    # recording a check twice is harmless, and only the answer carries the outcome
    posts = iter(["lost", "answer"])

    def script(request: httpx.Request) -> httpx.Response:
        if next(posts) == "lost":
            raise httpx.ReadError("connection reset", request=request)
        run = run_json("GOVERNANCE_CHECK")
        return httpx.Response(200, json={"passed": True, "reconciliation": {}, "run": run})

    service = FakeService(script)
    result = run(lambda c: c.governance_check(RUN_ID, "token", 1000), service)

    assert result["passed"] is True
    assert service.calls[("POST", f"/runs/{RUN_ID}/governance-check")] == 2
    assert service.calls[("GET", f"/runs/{RUN_ID}")] == 0


def test_an_ack_whose_response_was_lost_is_not_recorded_twice() -> None:
    recorded: list[dict[str, Any]] = []

    def script(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=run_json("EXECUTING", recorded))
        recorded.append({**json.loads(request.content), "late": False})
        raise httpx.RemoteProtocolError("server disconnected", request=request)

    service = FakeService(script)
    ack = run(
        lambda c: c.ack(RUN_ID, "logs", "start_trace", result_id="t-1", details={"x": 1}), service
    )

    assert ack["result_id"] == "t-1"
    assert len(recorded) == 1
    assert service.calls[("POST", f"/runs/{RUN_ID}/acks")] == 1


def test_an_ack_that_never_left_is_resent_without_reading_back() -> None:
    attempts = iter(["refuse", "accept"])

    def script(request: httpx.Request) -> httpx.Response:
        if next(attempts) == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(201, json={"domain": "logs", "action": "start_trace"})

    service = FakeService(script)
    run(lambda c: c.ack(RUN_ID, "logs", "start_trace"), service)

    assert service.calls == Counter({("POST", f"/runs/{RUN_ID}/acks"): 2})


def test_claim_long_polls_and_returns_none_on_204() -> None:
    bodies: list[dict[str, Any]] = []

    def script(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:
            return httpx.Response(204)
        lease = {"worker_id": "w", "token": "abc", "expires_at": "2030-01-01T00:00:00Z"}
        return httpx.Response(200, json={"run": run_json("CREATED"), "lease": lease})

    service = FakeService(script)

    async def twice(client: RokClient) -> Any:
        first = await client.claim("w", 5000, {"b", "a"}, wait_ms=1500)
        second = await client.claim("w", 5000, None, wait_ms=0)
        return first, second

    first, second = run(twice, service)
    assert first is None
    assert second.token == "abc" and second.run_id == RUN_ID
    claim_ids = [body.pop("claim_id") for body in bodies]
    assert bodies[0] == {
        "worker_id": "w",
        "lease_ms": 5000,
        "wait_ms": 1500,
        "handlers": ["a", "b"],
    }
    assert "handlers" not in bodies[1]
    assert len(set(claim_ids)) == 2  # a fresh key per claim


def test_a_claim_whose_answer_was_lost_is_sent_again_with_the_same_claim_id() -> None:
    bodies: list[dict[str, Any]] = []
    lease = {"worker_id": "w", "token": "abc", "expires_at": "2030-01-01T00:00:00Z"}

    def script(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:  # the service leased a run; its answer never arrived
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(200, json={"run": run_json("CREATED"), "lease": lease})

    claimed = run(lambda c: c.claim("w", 5000), FakeService(script))

    assert claimed is not None and claimed.token == "abc"
    assert len(bodies) == 2
    assert bodies[0]["claim_id"] == bodies[1]["claim_id"]


def test_a_404_is_a_missing_run() -> None:
    service = FakeService(lambda request: httpx.Response(404, json={"detail": "no such run"}))
    with pytest.raises(RunMissing):
        run(lambda c: c.get_run(RUN_ID), service)


def test_retrying_stops_after_retry_timeout_when_one_is_set() -> None:
    def script(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    service = FakeService(script)
    with pytest.raises(ServiceUnavailable):
        run(lambda c: c.health(), service, retry_timeout_s=0.05)
    assert service.calls[("GET", "/healthz")] > 1


def test_every_lifecycle_move_carries_the_lease_token() -> None:
    seen: list[str | None] = []

    def script(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Lease-Token"))
        if request.url.path.endswith("governance-check"):
            return httpx.Response(200, json={"passed": True, "reconciliation": {}, "run": {}})
        return httpx.Response(200, json=run_json("AUTHORIZED"))

    async def lifecycle(client: RokClient) -> None:
        await client.authorize(RUN_ID, "tok", "GRANTED")
        await client.begin_execution(RUN_ID, "tok")
        await client.execution_complete(RUN_ID, "tok", True)
        await client.governance_check(RUN_ID, "tok", 100)
        await client.finalize(RUN_ID, "tok", True)
        await client.fail(RUN_ID, "why", "tok")
        await client.ungoverned_outcome(RUN_ID, "tok", True)
        await client.heartbeat(RUN_ID, "w", "tok", 3000)

    run(lifecycle, FakeService(script))
    assert seen == ["tok"] * 8


def test_an_ack_batch_whose_response_was_lost_is_not_recorded_twice() -> None:
    recorded: list[dict[str, Any]] = []

    def script(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=run_json("EXECUTING", recorded))
        recorded.extend({**a, "late": False} for a in json.loads(request.content)["acks"])
        raise httpx.RemoteProtocolError("server disconnected", request=request)

    service = FakeService(script)
    batch = [
        {"domain": "policies", "action": "evaluate_policy", "result_id": "p-1"},
        {"domain": "traces", "action": "complete_trace", "result_id": "t-1"},
    ]
    acks = run(lambda c: c.ack_batch(RUN_ID, batch), service)

    assert [a["result_id"] for a in acks] == ["p-1", "t-1"]
    assert len(recorded) == 2
    assert service.calls[("POST", f"/runs/{RUN_ID}/acks/batch")] == 1


# -- the outbox: AckChannel ---------------------------------------------------------

OWED = [
    ("policies", "evaluate_policy"),
    ("traces", "complete_trace"),
    ("incidents", "create_incident"),
]


def outbox_run() -> dict[str, Any]:
    return {
        "id": RUN_ID,
        "acks": [],
        "expectations": [{"domain": d, "action": a} for d, a in OWED],
    }


def acking_service(refuse: Callable[[dict[str, Any]], bool] = lambda _: False) -> FakeService:
    """Answers single and batched acks; refuses (422) a request holding an ack `refuse` picks."""

    def script(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        acks = body["acks"] if request.url.path.endswith("/batch") else [body]
        if any(refuse(a) for a in acks):
            return httpx.Response(422, json={"detail": "refused"})
        out = [{**a, "at": "2026-01-01T00:00:00Z", "late": False} for a in acks]
        return httpx.Response(201, json={"acks": out} if len(acks) > 1 else out[0])

    return FakeService(script)


def send_all(client: RokClient, pairs: list[tuple[str, str]]) -> Any:
    async def go() -> AckChannel:
        channel = AckChannel(client, outbox_run())
        for domain, action in pairs:
            assert await channel.send(domain, action)
        await channel.flush()
        return channel

    return go()


def test_acks_queued_together_leave_in_one_request() -> None:
    service = acking_service()
    channel = run(lambda c: send_all(c, OWED), service)

    assert channel.delivered == OWED
    assert channel.requests == 1
    assert service.calls == Counter({("POST", f"/runs/{RUN_ID}/acks/batch"): 1})


def test_an_ack_queued_alone_leaves_alone_at_once() -> None:
    service = acking_service()

    async def go(client: RokClient) -> AckChannel:
        channel = AckChannel(client, outbox_run())
        for domain, action in OWED:
            await channel.send(domain, action)
            await channel.flush()
        return channel

    channel = run(go, service)
    assert channel.delivered == OWED
    assert service.calls == Counter({("POST", f"/runs/{RUN_ID}/acks"): 3})


def test_a_refused_batch_is_resent_one_by_one_so_good_acks_still_land() -> None:
    service = acking_service(refuse=lambda a: a["domain"] == "incidents")
    channel = run(lambda c: send_all(c, OWED), service)

    assert channel.delivered == OWED[:2]
    assert service.calls[("POST", f"/runs/{RUN_ID}/acks/batch")] == 1
    assert service.calls[("POST", f"/runs/{RUN_ID}/acks")] == 3


def test_an_ack_not_owed_is_not_sent() -> None:
    service = acking_service()

    async def go(client: RokClient) -> bool:
        channel = AckChannel(client, outbox_run())
        sent = await channel.send("search", "index")
        await channel.flush()
        return sent

    assert run(go, service) is False
    assert service.calls == Counter()
