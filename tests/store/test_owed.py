"""The owed feed's index and read (service.store.owed), on both backends.

Every test ends by comparing the whole index with what each run's record says
it owes (the `authority` fixture, tests.support.owed): a row missing or left
behind fails it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.authority import Authority
from service.kernel.kernel import RunOrchestrationKernel, create_rok
from service.model.phases import RunPhase
from service.store.owed import OwedQuery, OwedRun, owed_key, read_owed
from tests.support.authorities import checked_authority
from tests.support.owed import stored_owed

LOGS = ("complete_trace", "start_trace")


def new_run(authority: Authority, **fields: Any) -> RunOrchestrationKernel:
    kernel = create_rok(store=authority.store, settings=authority.settings, **fields)
    kernel.declare_expectations()
    return kernel


def run_in(authority: Authority, phase: RunPhase, **fields: Any) -> RunOrchestrationKernel:
    """A new run moved by hand (no worker) to `phase`, its execution successful."""
    kernel = new_run(authority, **fields)
    if phase is RunPhase.CREATED:
        return kernel
    kernel.authorize("GRANTED")
    if phase is RunPhase.AUTHORIZED:
        return kernel
    kernel.begin_execution()
    if phase is RunPhase.EXECUTING:
        return kernel
    kernel.execution_complete(True)
    assert phase is RunPhase.GOVERNANCE_CHECK
    return kernel


def owed(authority: Authority, domain: str, limit: int = 50, **query: Any) -> list[OwedRun]:
    with authority.database.read() as conn:
        return read_owed(conn, OwedQuery(domain, limit, **query))


def listed(runs: list[OwedRun]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(r.run_id, r.phase.value, r.actions) for r in runs]


def oldest_first(authority: Authority, kernels: list[RunOrchestrationKernel]) -> list[str]:
    rows = [authority.store.get(k.run_id).row for k in kernels]
    return [row.id for row in sorted(rows, key=lambda row: (row.created_at, row.id))]


def test_the_feed_lists_exactly_the_live_unjudged_runs_that_owe_the_domain(
    authority: Authority,
) -> None:
    created = run_in(authority, RunPhase.CREATED, handler="h", tenant_id="acme")
    authorized = run_in(authority, RunPhase.AUTHORIZED)
    executing = run_in(authority, RunPhase.EXECUTING)
    checking = run_in(authority, RunPhase.GOVERNANCE_CHECK)
    incident_acked = run_in(authority, RunPhase.GOVERNANCE_CHECK)
    incident_acked.ack("incidents", "create_incident")
    judged = run_in(authority, RunPhase.GOVERNANCE_CHECK)
    judged.governance_check(timeout_ms=0)  # recorded with everything missing
    completed = run_in(authority, RunPhase.GOVERNANCE_CHECK)
    for domain, action in [("incidents", "create_incident"), ("policies", "evaluate_policy")]:
        completed.ack(domain, action)
    completed.ack("logs", "start_trace")
    completed.ack("logs", "complete_trace")
    completed.governance_check(timeout_ms=0, finalize=True)
    failed = run_in(authority, RunPhase.EXECUTING)
    failed.fail("abandoned")
    own_contract = run_in(authority, RunPhase.CREATED, expectations=[("policies", "x", None)])

    live = [created, authorized, executing, checking]
    order = oldest_first(authority, live)
    phases = {k.run_id: k.phase.value for k in live}
    assert listed(owed(authority, "incidents")) == [
        (run_id, phases[run_id], ("create_incident",)) for run_id in order
    ]
    logs = owed(authority, "logs")
    assert [r.run_id for r in logs] == oldest_first(authority, [*live, incident_acked])
    assert {r.actions for r in logs} == {LOGS}
    policies = {r.run_id: r.actions for r in owed(authority, "policies")}
    assert policies[own_contract.run_id] == ("x",)
    first = owed(authority, "incidents")[order.index(created.run_id)]
    assert (first.tenant_id, first.handler) == ("acme", "h")
    assert owed(authority, "orchestrator") == []  # finalize_run is the kernel's own
    assert owed(authority, "nobody") == []
    assert {judged.run_id, completed.run_id, failed.run_id}.isdisjoint(
        {row[0] for row in stored_owed(authority.store)}
    )


def test_a_landed_ack_takes_its_pair_off_and_nothing_else(authority: Authority) -> None:
    kernel = run_in(authority, RunPhase.EXECUTING)
    kernel.ack("logs", "start_trace")
    assert listed(owed(authority, "logs")) == [(kernel.run_id, "EXECUTING", ("complete_trace",))]
    assert len(owed(authority, "incidents")) == 1

    kernel.ack("incidents", "create_incident", error="the incident tracker is down")
    assert owed(authority, "incidents") == []  # acked with an error is acked: failed, not owed
    kernel.ack("incidents", "create_incident")  # a second ack is drift; nothing to remove
    kernel.ack("unexpected", "thing")
    assert [r.run_id for r in owed(authority, "logs")] == [kernel.run_id]


def test_a_run_leaves_the_feed_when_it_ends_or_its_verdict_is_recorded(
    authority: Authority,
) -> None:
    ended = run_in(authority, RunPhase.AUTHORIZED)
    judged = run_in(authority, RunPhase.GOVERNANCE_CHECK)
    denied = new_run(authority)
    ended.fail("stopped by an operator")
    judged.governance_check(timeout_ms=0)
    denied.authorize("DENIED", "not today")
    assert owed(authority, "policies") == []

    # acks after the verdict are late: drift, never evidence; they add nothing back
    judged.ack("policies", "evaluate_policy")
    assert owed(authority, "policies") == []
    judged.finalize(success=True)
    assert stored_owed(authority.store) == set()


def test_the_index_follows_the_run_through_its_phases(authority: Authority) -> None:
    kernel = new_run(authority)
    moves: list[tuple[RunPhase, Callable[[], RunPhase]]] = [
        (RunPhase.AUTHORIZED, lambda: kernel.authorize("GRANTED")),
        (RunPhase.EXECUTING, kernel.begin_execution),
        (RunPhase.GOVERNANCE_CHECK, lambda: kernel.execution_complete(False, "boom")),
    ]
    for phase, move in moves:
        move()
        assert {row[3] for row in stored_owed(authority.store)} == {phase.value}
        assert [r.run_id for r in owed(authority, "incidents", phase=phase)] == [kernel.run_id]
        assert owed(authority, "incidents", phase=RunPhase.CREATED) == []


def test_a_tenant_sees_only_its_runs(authority: Authority) -> None:
    acme = run_in(authority, RunPhase.CREATED, tenant_id="acme")
    other = run_in(authority, RunPhase.CREATED, tenant_id="other")
    untenanted = run_in(authority, RunPhase.CREATED)
    assert [r.run_id for r in owed(authority, "incidents", tenant_id="acme")] == [acme.run_id]
    assert [r.run_id for r in owed(authority, "incidents", tenant_id="other")] == [other.run_id]
    everyone = {r.run_id for r in owed(authority, "incidents")}
    assert everyone == {acme.run_id, other.run_id, untenanted.run_id}


def test_limit_bounds_the_rows_and_keeps_each_runs_actions_together(
    authority: Authority,
) -> None:
    kernels = [run_in(authority, RunPhase.CREATED) for _ in range(3)]
    order = oldest_first(authority, kernels)
    for limit, runs in [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3), (50, 3)]:
        page = owed(authority, "logs", limit=limit)
        assert [r.run_id for r in page] == order[:runs], limit
        assert all(r.actions == LOGS for r in page), limit


def test_a_run_declared_without_the_audit_contract_owes_nothing(migrated_url: str) -> None:
    with checked_authority(migrated_url, rac_enabled=False) as authority:
        run_in(authority, RunPhase.EXECUTING)
        assert stored_owed(authority.store) == set()


def test_commits_notify_the_domains_they_concern(authority: Authority) -> None:
    """A new run, a landed ack and a move wake the waiters of each domain concerned only."""
    signals = authority.signals
    with (
        signals.subscribe(owed_key("incidents")) as incidents,
        signals.subscribe(owed_key("elsewhere")) as elsewhere,
    ):
        kernel = new_run(authority)
        assert incidents.wait_blocking(0) and not elsewhere.wait_blocking(0)
    with signals.subscribe(owed_key("incidents")) as incidents:
        kernel.ack("incidents", "create_incident")
        assert incidents.wait_blocking(0)
    with signals.subscribe(owed_key("logs")) as logs:
        kernel.authorize("GRANTED")
        assert logs.wait_blocking(0)
    with signals.subscribe(owed_key("incidents")) as incidents:
        kernel.begin_execution()  # it owes incidents nothing any more
        assert not incidents.wait_blocking(0)
    kernel.fail("done")
