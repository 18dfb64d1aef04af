"""Run control end to end: a real service process, a real WorkerPool and the reference
domains — a cancellation reaching the handler, retries with backoff, a kept result,
and an approval a policy asks for (DESIGN section 11)."""

from __future__ import annotations

import threading
import time
from typing import Any

from service.domains import IncidentsDomain, PoliciesDomain, PolicySet, TracesDomain
from service.worker import CancelRequested, RunContext
from tests.e2e.harness import Api, RokService, acks_by_pair, fast_pool

INCIDENT = ("incidents", "create_incident")


def test_a_cancel_reaches_the_handler_and_the_run_fails_governed(rok: RokService, api: Api) -> None:
    cleaned_up = threading.Event()

    def long_job(ctx: RunContext) -> None:
        try:
            while True:
                ctx.check()  # raises CancelRequested once the heartbeat brings the cancel
                time.sleep(0.02)
        except CancelRequested:
            cleaned_up.set()  # the handler's own cleanup
            raise

    run_id = api.create("long_job")
    pool = fast_pool(rok.url, {"long_job": long_job}, domains=_domains())
    with pool.running():
        api.wait_for_phase(run_id, {"EXECUTING"})
        answer = api.http.post(f"/runs/{run_id}/cancel", json={"reason": "no longer needed"})
        assert answer.status_code == 200 and answer.json()["cancel_requested"] is True
        run = api.wait_terminal(run_id)

    assert cleaned_up.is_set()
    assert run["phase"] == "FAILED"
    assert run["error"] == "cancelled: no longer needed"
    assert run["governance"] is not None  # failed through the normal, governed path
    incident = acks_by_pair(run)[INCIDENT]
    assert incident["result_id"] and incident["details"]["kind"] == "cancel_requested"
    events = [h for h in run["history"] if h["kind"] == "event"]
    assert [e["details"]["event"] for e in events] == ["cancel_requested"]


def test_a_failing_handler_is_retried_with_backoff_then_completes(
    rok: RokService, api: Api
) -> None:
    incidents = IncidentsDomain()

    def flaky(ctx: RunContext) -> dict[str, Any]:
        if ctx.attempt < 3:
            raise RuntimeError(f"transient failure {ctx.attempt}")
        return {"answer": 42, "attempt": ctx.attempt}

    run_id = api.create("flaky", retry={"max_attempts": 3, "backoff_ms": 200})
    domains = [PoliciesDomain(rules=PolicySet()), TracesDomain(), incidents]
    fast_pool(rok.url, {"flaky": flaky}, domains=domains).run_until(3, timeout_s=60)

    run = api.wait_terminal(run_id)
    assert run["phase"] == "COMPLETED" and run["attempt"] == 3
    assert run["result"] == {"answer": 42, "attempt": 3}
    retried = [h for h in run["history"] if h["details"].get("attempt_started")]
    assert [h["details"]["error"].splitlines()[0] for h in retried] == [
        "RuntimeError: transient failure 1",
        "RuntimeError: transient failure 2",
    ]
    assert all(h["details"]["backoff_ms"] >= 200 for h in retried)
    # the incidents domain saw each failed attempt; the run's evidence was acked once
    assert [i["kind"] for i in incidents.opened] == ["handler_error", "handler_error"]
    ack = acks_by_pair(run)[INCIDENT]
    assert ack["result_id"] is None and len(ack["details"]["failed_attempts"]) == 2
    assert run["governance"]["passed"] is True
    assert run["reconciliation"]["status"] == "COMPLETE"


def test_a_result_json_cannot_carry_fails_the_execution(rok: RokService, api: Api) -> None:
    run_id = api.create("odd")
    fast_pool(rok.url, {"odd": lambda ctx: {1, 2}}, domains=_domains()).run_until(1, timeout_s=30)
    run = api.wait_terminal(run_id)
    assert run["phase"] == "FAILED"
    assert "result is not JSON (set)" in run["error"]


def test_a_policy_can_hold_runs_for_approval(rok: RokService, api: Api) -> None:
    rules = {"handlers": {"pay": {"require_approval": True}}}
    run_id = api.create("pay", input={"amount": 10})
    ran = threading.Event()

    def pay(ctx: RunContext) -> str:
        ran.set()
        return "paid"

    domains = [PoliciesDomain(rules=PolicySet.from_mapping(rules, "test rules")), TracesDomain()]
    pool = fast_pool(rok.url, {"pay": pay}, domains=[*domains, IncidentsDomain()])
    with pool.running():
        held = api.wait_for(run_id, lambda r: (r.get("approval") or {}).get("state") == "pending")
        assert held["phase"] == "CREATED" and held["lease"] is None and not ran.is_set()
        assert "requires approval by policy" in held["history"][-1]["reason"]
        approved = api.http.post(f"/runs/{run_id}/approve", json={"by": "alice"})
        assert approved.status_code == 200
        run = api.wait_terminal(run_id)

    assert ran.is_set() and run["phase"] == "COMPLETED" and run["result"] == "paid"
    assert run["approval"]["by"] == "alice"


def _domains() -> list[Any]:
    return [PoliciesDomain(rules=PolicySet()), TracesDomain(), IncidentsDomain()]
