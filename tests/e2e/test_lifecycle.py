"""A real service, a real WorkerPool, the reference domains: each path a run can take."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from service.domains import IncidentsDomain, PoliciesDomain, PolicySet, TracesDomain
from service.worker import RunCancelled, RunContext
from tests.e2e.harness import (
    DEFAULT_PAIRS,
    FULL_PATH,
    Api,
    RokService,
    acks_by_pair,
    fast_pool,
    phases,
    reference,
    rok_service,
)


def test_a_clean_run_completes_with_every_domain_acked(rok: RokService, api: Api) -> None:
    async def agent(ctx: RunContext) -> dict[str, Any]:
        ctx.step("plan", goal=ctx.input["goal"])
        ctx.charge(0.25)
        await asyncio.sleep(0.01)
        ctx.step("answer")
        return {"answer": 42}

    run_id = api.create("agent", input={"goal": "answer"})
    results = fast_pool(rok.url, {"agent": agent}).run_until(1, timeout_s=30)

    assert [r.run_id for r in results] == [run_id]
    run = api.get(run_id)
    assert run["phase"] == "COMPLETED"
    assert phases(run) == FULL_PATH
    assert run["governance"]["passed"] is True
    assert run["reconciliation"]["status"] == "COMPLETE"
    acks = acks_by_pair(run)
    assert set(acks) == DEFAULT_PAIRS
    assert all(a["error"] is None and not a["late"] for a in acks.values())
    assert acks[("incidents", "create_incident")]["result_id"] is None
    assert run["incidents"] == []
    trace = acks[("logs", "complete_trace")]
    assert trace["result_id"] == acks[("logs", "start_trace")]["result_id"]
    assert [s["name"] for s in trace["details"]["spans"]] == ["run agent", "plan", "answer"]
    assert trace["details"]["spans"][1]["attributes"] == {"goal": "answer"}
    policy = acks[("policies", "evaluate_policy")]["details"]
    assert policy["verdict"] == "ALLOWED"
    assert policy["observed"]["cost"] == 0.25 and policy["observed"]["steps"] == 2


def test_a_run_the_policy_denies_never_executes_and_opens_an_incident(
    rok: RokService, api: Api
) -> None:
    executed = threading.Event()

    def forbidden(ctx: RunContext) -> None:
        executed.set()

    domains = reference({"handlers": {"forbidden": {"kill_switch": True}}})
    run_id = api.create("forbidden")
    fast_pool(rok.url, {"forbidden": forbidden}, domains).run_until(1, timeout_s=30)

    run = api.get(run_id)
    assert not executed.is_set()
    assert run["phase"] == "FAILED" and phases(run) == ["FAILED"]
    assert run["history"][0]["details"]["decision"] == "DENIED_BY_POLICY"
    assert "kill switch of handler 'forbidden'" in run["error"]
    [incident] = run["incidents"]
    assert incident["kind"] == "denied"
    acks = acks_by_pair(run)
    assert not any(a["late"] for a in acks.values()), "the domains acked before the denial"
    assert acks[("policies", "evaluate_policy")]["details"]["verdict"] == "DENIED"
    assert run["reconciliation"]["failed"] == [["policies", "evaluate_policy"]]


def test_a_custom_authorizer_is_consulted_after_the_policies(rok: RokService, api: Api) -> None:
    from service.worker import Decision

    seen: list[str] = []

    def authorizer(ctx: RunContext) -> Decision:
        seen.append(ctx.handler)
        return Decision("DENIED_BY_REVIEWER", "needs a human") if ctx.input else Decision("GRANTED")

    allowed, denied = api.create("job"), api.create("job", input={"risky": True})
    fast_pool(rok.url, {"job": lambda ctx: "ok"}, authorizer=authorizer).run_until(2, timeout_s=30)

    assert api.get(allowed)["phase"] == "COMPLETED"
    run = api.get(denied)
    assert run["phase"] == "FAILED" and "DENIED_BY_REVIEWER (needs a human)" in run["error"]
    assert run["incidents"][0]["kind"] == "denied"
    assert seen == ["job", "job"]


def test_a_handler_exception_fails_its_run_not_the_pool(rok: RokService, api: Api) -> None:
    def explode(ctx: RunContext) -> None:
        ctx.step("about to fail")
        raise ValueError("the input was malformed")

    broken = api.create("explode")
    fine = api.create("fine")
    pool = fast_pool(rok.url, {"explode": explode, "fine": lambda ctx: "ok"}, concurrency=1)
    pool.run_until(2, timeout_s=30)

    run = api.get(broken)
    assert run["phase"] == "FAILED"
    assert phases(run) == ["AUTHORIZED", "EXECUTING", "GOVERNANCE_CHECK", "FINALIZING", "FAILED"]
    assert run["error"].startswith("ValueError: the input was malformed")
    assert "traceback" in run["error"] and "in explode" in run["error"]
    assert run["incidents"][0]["kind"] == "handler_error"
    assert run["reconciliation"]["status"] == "COMPLETE"  # the evidence of a failure is complete
    assert api.get(fine)["phase"] == "COMPLETED"


def test_a_handler_past_its_timeout_is_abandoned_and_its_slot_freed(
    rok: RokService, api: Api
) -> None:
    release = threading.Event()

    def stuck_sync(ctx: RunContext) -> None:
        release.wait(30)

    async def stuck_async(ctx: RunContext) -> None:
        await asyncio.sleep(30)

    sync_run = api.create("stuck_sync", run_timeout_ms=300)
    async_run = api.create("stuck_async", run_timeout_ms=300)
    after = api.create("fine")
    handlers = {"stuck_sync": stuck_sync, "stuck_async": stuck_async, "fine": lambda ctx: "ok"}
    try:
        fast_pool(rok.url, handlers, concurrency=1).run_until(3, timeout_s=30)
    finally:
        release.set()

    for run_id, name in ((sync_run, "stuck_sync"), (async_run, "stuck_async")):
        run = api.get(run_id)
        assert run["phase"] == "FAILED"
        assert run["error"] == (
            f"timeout: handler '{name}' ran past its run timeout of 300 ms and was abandoned"
        )
        assert run["incidents"][0]["kind"] == "timeout"
    assert api.get(after)["phase"] == "COMPLETED", "one slot, so the timeout freed it"


def test_a_budget_crossed_mid_run_stops_the_handler(rok: RokService, api: Api) -> None:
    calls: list[int] = []
    swallowed: list[BaseException] = []

    def spender(ctx: RunContext) -> None:
        for call in range(100):
            calls.append(call)
            try:
                ctx.charge(0.4)
            except RunCancelled as exc:
                swallowed.append(exc)  # a handler that ignores the stop is still stopped
            time.sleep(0.005)
            if swallowed:
                ctx.check()

    domains = reference({"handlers": {"spender": {"max_cost": 1.0}}})
    run_id = api.create("spender")
    fast_pool(rok.url, {"spender": spender}, domains).run_until(1, timeout_s=30)

    run = api.get(run_id)
    assert run["phase"] == "FAILED"
    assert run["error"] == "policy violation: cost 1.2 exceeds max_cost 1 of handler 'spender'"
    assert calls == [0, 1, 2], "the third charge crossed max_cost and nothing ran after it"
    assert run["incidents"][0]["kind"] == "policy_violation"
    evaluation = acks_by_pair(run)[("policies", "evaluate_policy")]
    assert evaluation["error"].startswith("policy violated: cost 1.2 exceeds max_cost 1")
    assert evaluation["details"]["verdict"] == "VIOLATED"
    assert run["reconciliation"]["failed"] == [["policies", "evaluate_policy"]]


def test_max_steps_and_max_duration_are_enforced_too(rok: RokService, api: Api) -> None:
    def chatty(ctx: RunContext) -> None:
        for n in range(10):
            ctx.step(f"step {n}")

    async def dawdler(ctx: RunContext) -> None:
        await asyncio.sleep(30)

    rules = {"handlers": {"chatty": {"max_steps": 3}, "dawdler": {"max_duration_ms": 200}}}
    steps_run, slow_run = api.create("chatty"), api.create("dawdler")
    pool = fast_pool(rok.url, {"chatty": chatty, "dawdler": dawdler}, reference(rules))
    pool.run_until(2, timeout_s=30)

    assert api.get(steps_run)["error"] == (
        "policy violation: 4 steps exceed max_steps 3 of handler 'chatty'"
    )
    assert api.get(slow_run)["error"] == (
        "policy violation: handler 'dawdler' ran past max_duration_ms 200"
    )


def test_a_domain_that_raises_acks_with_its_error(rok: RokService, api: Api) -> None:
    from service.domains.faults import Raising

    domains = [PoliciesDomain(), TracesDomain(), Raising(IncidentsDomain(), message="disk full")]
    run_id = api.create("job")
    fast_pool(rok.url, {"job": lambda ctx: "ok"}, domains).run_until(1, timeout_s=30)

    run = api.get(run_id)
    assert run["phase"] == "COMPLETED"  # the check reports it; it does not block (non-strict)
    assert run["governance"]["passed"] is False
    assert run["reconciliation"]["failed"] == [["incidents", "create_incident"]]
    error = acks_by_pair(run)[("incidents", "create_incident")]["error"]
    assert error.startswith("domain incidents failed in on_execution_end: DomainFault: disk full")


def test_a_domain_that_hangs_leaves_its_ack_missing(rok: RokService, api: Api) -> None:
    from service.domains.faults import Hanging

    hanging = Hanging(TracesDomain(), hooks=("on_execution_end",))
    domains = [PoliciesDomain(), hanging, IncidentsDomain()]
    first, second = api.create("job"), api.create("job")
    pool = fast_pool(rok.url, {"job": lambda ctx: "ok"}, domains, domain_timeout_ms=300)
    pool.run_until(2, timeout_s=30)

    assert hanging.entered == 2
    for run_id in (first, second):
        run = api.get(run_id)
        assert run["phase"] == "COMPLETED"
        assert run["reconciliation"]["missing"] == [["logs", "complete_trace"]]
        assert ("logs", "start_trace") in acks_by_pair(run)


def test_strict_governance_fails_a_run_whose_domain_is_silent(rok: RokService, api: Api) -> None:
    from service.domains import Muted

    domains = [PoliciesDomain(), Muted(TracesDomain(), lambda ctx: True), IncidentsDomain()]
    run_id = api.create("job")
    pool = fast_pool(rok.url, {"job": lambda ctx: "ok"}, domains, require_all_acks=True)
    pool.run_until(1, timeout_s=30)

    run = api.get(run_id)
    assert run["phase"] == "FAILED"
    assert "missing logs/complete_trace, logs/start_trace" in run["error"]


def test_a_run_failed_from_outside_stops_its_handler_and_the_pool_moves_on(
    rok: RokService, api: Api
) -> None:
    started = threading.Event()
    cancelled: list[str] = []

    def long_job(ctx: RunContext) -> None:
        started.set()
        try:
            while True:
                ctx.check()
                time.sleep(0.01)
        except RunCancelled as exc:
            cancelled.append(exc.error)
            raise

    victim = api.create("long_job")
    pool = fast_pool(rok.url, {"long_job": long_job, "fine": lambda ctx: "ok"}, concurrency=1)
    pool_results = pool.results
    with pool.running():
        assert started.wait(30)
        api.wait_for_phase(victim, ["EXECUTING"])
        assert api.fail(victim, "cancelled by operator: wrong customer").status_code == 200
        after = api.create("fine")
        api.wait_terminal(after)

    assert cancelled == [
        "cancelled: the run was failed from outside: cancelled by operator: wrong customer"
    ]
    run = api.get(victim)
    assert run["phase"] == "FAILED" and run["error"] == "cancelled by operator: wrong customer"
    assert phases(run) == ["AUTHORIZED", "EXECUTING", "FAILED"], "no move after the cancel"
    assert api.get(after)["phase"] == "COMPLETED"
    lost = [r for r in pool_results if r.run_id == victim]
    assert len(lost) == 1 and lost[0].lost


def test_rok_disabled_runs_handlers_with_one_status_update(migrated_url: str) -> None:
    def explode(ctx: RunContext) -> None:
        raise RuntimeError("nope")

    # only a service started with ROK_ENABLED=false takes ungoverned outcomes
    with rok_service(migrated_url, {"ROK_ENABLED": "false"}) as rok:
        api = rok.api
        good, bad = api.create("fine"), api.create("explode")
        handlers = {"fine": lambda ctx: "ok", "explode": explode}
        fast_pool(rok.url, handlers, rok_enabled=False).run_until(2, timeout_s=30)
        _check_ungoverned(api, good, bad)


def _check_ungoverned(api: Api, good: str, bad: str) -> None:
    run = api.get(good)
    assert run["phase"] == "COMPLETED" and run["governance"] is None
    assert {entry["reason"] for entry in run["history"]} == {"ungoverned (ROK_ENABLED=false)"}
    assert set(acks_by_pair(run)) == {("orchestrator", "finalize_run")}, "no domain was asked"
    assert run["reconciliation"]["status"] == "INCOMPLETE", "the evidence honestly missing"
    failed = api.get(bad)
    assert failed["phase"] == "FAILED" and failed["error"].startswith("RuntimeError: nope")
    assert phases(failed) == ["FAILED"]
    assert set(acks_by_pair(failed)) == {("orchestrator", "finalize_run")}


def test_a_custom_contract_gets_only_the_acks_it_expects(rok: RokService, api: Api) -> None:
    run_id = api.create("job", expectations=[{"domain": "policies", "action": "evaluate_policy"}])
    fast_pool(rok.url, {"job": lambda ctx: "ok"}).run_until(1, timeout_s=30)

    run = api.get(run_id)
    assert run["phase"] == "COMPLETED" and run["reconciliation"]["status"] == "COMPLETE"
    assert set(acks_by_pair(run)) == {
        ("policies", "evaluate_policy"),
        ("orchestrator", "finalize_run"),
    }


def test_policy_rules_are_reread_when_the_file_changes(
    rok: RokService, api: Api, tmp_path: Any
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("kill_switch = false\n")
    policies = PoliciesDomain(rules)
    domains = [policies, TracesDomain(), IncidentsDomain()]
    handlers = {"job": lambda ctx: "ok"}

    first = api.create("job")
    fast_pool(rok.url, handlers, domains).run_until(1, timeout_s=30)
    rules.write_text("kill_switch = true\n")
    later = api.create("job")
    fast_pool(rok.url, handlers, domains).run_until(1, timeout_s=30)

    assert api.get(first)["phase"] == "COMPLETED"
    assert "global kill switch is on" in api.get(later)["error"]
    assert isinstance(policies.rules, PolicySet)
