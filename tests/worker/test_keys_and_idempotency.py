"""What the client sends: the API key on every request, an Idempotency-Key on every POST
that is not exactly-once by itself (one per call, the same on each of its tries), and how
it waits out "not now" answers. Moves, claims and heartbeats go without a key: the phase
machine, the lease and the claim_id refuse or return what was done once already.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from service.worker.api_errors import Conflict
from service.worker.cli import WorkerOptions, load_app, worker_command
from service.worker.client import RokClient
from service.worker.pool import WorkerPool
from service.worker.retries import IDEMPOTENCY_HEADER, Backoff
from tests.worker.test_cli import default_domains

RUN_ID = "6f1c9f5e-8d7a-4f55-9a43-4b9d0a0c2f11"
FAST = Backoff(first_s=0.001, cap_s=0.002)
LEASE = {"token": "t", "expires_at": "2030-01-01T00:00:00+00:00", "worker_id": "w"}

handlers = {"job": lambda ctx: "ok"}


def run_json(phase: str) -> dict[str, Any]:
    return {"id": RUN_ID, "phase": phase, "acks": [], "expectations": []}


class Recorder:
    """A scripted service that keeps every request it was sent."""

    def __init__(self, script: Callable[[httpx.Request, int], httpx.Response]) -> None:
        self.script = script
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.script(request, len(self.requests))

    def keys(self, method: str = "POST") -> list[str | None]:
        return [r.headers.get(IDEMPOTENCY_HEADER) for r in self.requests if r.method == method]


def drive(calls: Callable[[RokClient], Any], service: Recorder, api_key: str | None = None) -> Any:
    async def main() -> Any:
        async with RokClient(
            "http://rok.test",
            transport=httpx.MockTransport(service),
            backoff=FAST,
            api_key=api_key,
        ) as client:
            return await calls(client)

    return asyncio.run(main())


def always(status: int, body: Any) -> Callable[[httpx.Request, int], httpx.Response]:
    return lambda request, _n: httpx.Response(status, json=body)


def test_creates_and_acks_carry_a_new_key_moves_and_reads_carry_none() -> None:
    service = Recorder(always(200, run_json("EXECUTING")))

    async def calls(client: RokClient) -> None:
        await client.create_run(handler="job")
        await client.ack(RUN_ID, "policies", "evaluate_policy")
        await client.ack_batch(RUN_ID, [{"domain": "logs", "action": "start_trace"}] * 2)
        await client.begin_execution(RUN_ID, "token")
        await client.heartbeat(RUN_ID, "w", "token", 1000)
        await client.get_run(RUN_ID)

    service = Recorder(
        lambda request, _n: httpx.Response(
            200, json={"acks": []} if request.url.path.endswith("/batch") else run_json("EXECUTING")
        )
    )
    drive(calls, service)
    keys = service.keys("POST")
    assert len(keys) == 5
    assert all(keys[:3]) and len(set(keys[:3])) == 3, "each new request needs a new key"
    # exactly-once by themselves: a key would cost the service two more writes each
    assert keys[3:] == [None, None]
    assert service.keys("GET") == [None]


def test_a_retry_after_a_lost_answer_sends_the_same_key() -> None:
    """The service acts on the first try and the answer is lost; the retry must be replayed."""

    def script(request: httpx.Request, n: int) -> httpx.Response:
        if n == 1:
            raise httpx.ReadError("connection reset", request=request)
        if n == 2:
            return httpx.Response(503, json={"detail": "restarting"})
        return httpx.Response(201, json=run_json("CREATED"))

    service = Recorder(script)
    drive(lambda c: c.create_run(handler="job"), service)
    keys = service.keys("POST")
    assert len(keys) == 3 and len(set(keys)) == 1 and keys[0]


def test_a_lost_claim_answer_is_retried_with_the_same_claim_id() -> None:
    """No key on a claim: its claim_id makes the service return the lease it took."""

    def script(request: httpx.Request, n: int) -> httpx.Response:
        if n == 1:
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(200, json={"run": run_json("CREATED"), "lease": LEASE})

    service = Recorder(script)
    drive(lambda c: c.claim("w", 1000), service)
    claim_ids = {json.loads(r.content)["claim_id"] for r in service.requests}
    assert len(service.requests) == 2 and len(claim_ids) == 1


def test_the_api_key_goes_on_every_request_and_none_without_one() -> None:
    service = Recorder(always(200, run_json("EXECUTING")))

    async def calls(client: RokClient) -> None:
        await client.get_run(RUN_ID)
        await client.begin_execution(RUN_ID, "token")

    drive(calls, service, api_key="rok_abc_secret")
    assert [r.headers["authorization"] for r in service.requests] == ["Bearer rok_abc_secret"] * 2
    anonymous = Recorder(always(200, run_json("EXECUTING")))
    drive(lambda c: c.get_run(RUN_ID), anonymous)
    assert "authorization" not in anonymous.requests[0].headers


def test_a_key_still_in_progress_is_waited_out_not_taken_for_a_lost_run() -> None:
    in_progress = {"detail": "still running", "code": "idempotency_in_progress"}
    ack = {"domain": "policies", "action": "evaluate_policy", "result_id": None}

    def script(request: httpx.Request, n: int) -> httpx.Response:
        if request.method == "GET":  # the read back: not recorded yet
            return httpx.Response(200, json=run_json("EXECUTING"))
        if n == 1:
            raise httpx.ReadTimeout("slow", request=request)
        if n <= 5:
            return httpx.Response(409, json=in_progress, headers={"retry-after": "0"})
        return httpx.Response(201, json=ack)

    service = Recorder(script)
    answer = drive(lambda c: c.ack(RUN_ID, "policies", "evaluate_policy"), service)
    assert answer["action"] == "evaluate_policy"
    assert len(set(service.keys("POST"))) == 1


def test_a_409_that_is_not_about_the_key_is_still_a_conflict() -> None:
    service = Recorder(always(409, {"detail": "lease lost", "current_phase": "FAILED"}))
    with pytest.raises(Conflict):
        drive(lambda c: c.begin_execution(RUN_ID, "token"), service)
    assert len(service.requests) == 1


def test_a_429_is_retried_after_retry_after() -> None:
    def script(request: httpx.Request, n: int) -> httpx.Response:
        if n <= 2:
            limited = {"detail": "rate limit", "code": "rate_limited"}
            return httpx.Response(429, json=limited, headers={"retry-after": "0"})
        return httpx.Response(201, json={"id": RUN_ID})

    service = Recorder(script)
    assert drive(lambda c: c.create_run(handler="h"), service) == {"id": RUN_ID}
    assert len(service.requests) == 3
    assert len(set(service.keys("POST"))) == 1, "a 429 ran nothing: the same request again"


# -- rok worker --key / ROK_API_KEY -----------------------------------------------------


def factory(url: str, concurrency: int) -> WorkerPool:
    return WorkerPool(url, handlers, concurrency=concurrency, domains=[], api_key="own")


def parse(*argv: str) -> WorkerOptions:
    return worker_command(default_domains).options(argv)


APP = "tests.worker.test_keys_and_idempotency"


def test_rok_worker_takes_the_key_from_key_or_rok_api_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ROK_API_KEY", raising=False)
    assert load_app(parse("--app", f"{APP}:handlers")).api_key is None
    assert load_app(parse("--app", f"{APP}:handlers", "--key", "k1")).api_key == "k1"
    monkeypatch.setenv("ROK_API_KEY", "k2")
    assert load_app(parse("--app", f"{APP}:handlers")).api_key == "k2"
    assert load_app(parse("--app", f"{APP}:handlers", "--key", "k3")).api_key == "k3"
    # a pool a factory built keeps its own key unless one is given
    monkeypatch.delenv("ROK_API_KEY")
    assert load_app(parse("--app", f"{APP}:factory")).api_key == "own"
    assert load_app(parse("--app", f"{APP}:factory", "--key", "k4")).api_key == "k4"


def test_a_pool_reads_rok_api_key_unless_given_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROK_API_KEY", "from-env")
    assert WorkerPool("http://x", handlers).api_key == "from-env"
    assert WorkerPool("http://x", handlers, api_key="given").api_key == "given"
    monkeypatch.setenv("ROK_API_KEY", "")
    assert WorkerPool("http://x", handlers).api_key is None


@pytest.mark.parametrize(("read_back_attempt", "sends"), [(1, 2), (2, 1)])
def test_a_lost_failure_counts_as_landed_only_past_its_attempt(
    read_back_attempt: int, sends: int
) -> None:
    """A failed execution-complete whose answer was lost: a run read back in EXECUTING at
    the same attempt is where it was (sent again); at the next attempt, it landed."""

    def script(request: httpx.Request, n: int) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=run_json("EXECUTING") | {"attempt": read_back_attempt})
        if n == 1:
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(200, json=run_json("EXECUTING") | {"attempt": 2})

    service = Recorder(script)
    run = drive(lambda c: c.execution_complete(RUN_ID, "token", False, "boom", attempt=1), service)
    assert run["attempt"] == 2
    assert len(service.keys("POST")) == sends
