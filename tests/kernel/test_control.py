"""Run control in the kernel (DESIGN section 11): cancel, approval, retries, results,
schedule, queue timeout, release, and the rules that refuse moves. Both backends;
time is passed in (kernel(now=...), claim(now), tick(now)), never slept."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from service.authority import Authority
from service.errors import InvalidRequest, LeaseLost, PhaseTransitionError
from service.kernel.kernel import create_rok
from service.kernel.rulebook import ACCEPT, Move, MoveRefused, Ruling
from service.model.phases import RunPhase
from service.store.records import RetryPolicy, RunRow
from service.sweeper import Sweeper
from tests.support.runs import RunFactory

LEASE_MS = 10_000
NON_TERMINAL = [p for p in RunPhase if p not in (RunPhase.COMPLETED, RunPhase.FAILED)]


def new_run(authority: Authority, **spec: Any) -> str:
    kernel = create_rok(store=authority.store, settings=authority.settings, handler="job", **spec)
    assert kernel.declare_expectations()
    return kernel.run_id


def claim(authority: Authority, now: datetime | None = None) -> tuple[str, str] | None:
    claimed = authority.leases.claim("w1", LEASE_MS, None, now or authority.clock())
    if claimed is None:
        return None
    record, lease = claimed
    return record.id, lease.token


def executing_leased(authority: Authority, **spec: Any) -> tuple[str, str]:
    run_id = new_run(authority, **spec)
    claimed = claim(authority)
    assert claimed is not None and claimed[0] == run_id
    authority.kernel(run_id, claimed[1]).authorize("GRANTED", begin_execution=True)
    return claimed


# -- cancellation ----------------------------------------------------------------------


@pytest.mark.parametrize("phase", NON_TERMINAL)
def test_cancel_fails_a_run_nobody_executes_at_once(runs: RunFactory, phase: RunPhase) -> None:
    run_id = runs.at(phase)
    kernel = runs.authority.kernel(run_id)

    assert kernel.cancel("superseded") is RunPhase.FAILED

    record = kernel.load()
    assert record.row.error == "cancelled: superseded"
    last = record.history[-1].transition
    assert last.reason == "cancelled by an operator: superseded"
    assert last.details == {"cancelled_by": "an operator", "reason": "superseded"}


def test_cancel_of_an_executing_run_asks_its_worker(authority: Authority) -> None:
    run_id, token = executing_leased(authority)

    assert authority.kernel(run_id).cancel("operator says stop") is RunPhase.EXECUTING

    record = authority.store.get(run_id)
    assert record.row.control.cancel_requested
    assert record.row.control.cancel_reason == "operator says stop"
    event = record.history[-1].transition
    assert event.from_phase is event.to_phase is RunPhase.EXECUTING
    assert event.details["event"] == "cancel_requested"
    # the heartbeat tells the worker
    lease = authority.leases.heartbeat(run_id, "w1", token, LEASE_MS, authority.clock())
    assert lease.cancel_reason == "operator says stop"
    # it cannot report success any more, nor is its failure retried
    worker = authority.kernel(run_id, token)
    with pytest.raises(MoveRefused, match="report the execution as failed") as refused:
        worker.execution_complete(True)
    assert refused.value.rule == "cancellation"
    assert worker.execution_complete(False, "cancelled: operator says stop") is (
        RunPhase.GOVERNANCE_CHECK
    )
    # a second cancel is refused; the run goes on to its governed end
    with pytest.raises(MoveRefused, match="requested already"):
        authority.kernel(run_id).cancel("again")


def test_cancel_of_a_finished_run_is_refused_and_changes_nothing(runs: RunFactory) -> None:
    run_id = runs.at(RunPhase.COMPLETED)
    before = runs.authority.store.get(run_id)
    with pytest.raises(PhaseTransitionError, match="terminal"):
        runs.authority.kernel(run_id).cancel("too late")
    assert runs.authority.store.get(run_id) == before


def test_worker_calls_after_a_cancel_are_fenced(authority: Authority) -> None:
    run_id = new_run(authority)
    claimed = claim(authority)
    assert claimed is not None
    authority.kernel(run_id).cancel("stop")  # CREATED: failed now, the lease dropped
    with pytest.raises(LeaseLost):
        authority.kernel(run_id, claimed[1]).authorize("GRANTED")


def test_sweeper_fails_a_cancellation_its_worker_ignored(authority: Authority) -> None:
    run_id, _ = executing_leased(authority)
    authority.kernel(run_id).cancel("stop now")
    asked = authority.store.get(run_id).row.control.cancel_requested_at
    assert asked is not None
    grace = timedelta(milliseconds=authority.settings.cancel_grace_ms)

    # within the grace and the lease: the worker still has time to stop
    assert Sweeper(authority).tick(asked + timedelta(seconds=5)).failed_cancelled == []
    report = Sweeper(authority).tick(asked + grace + timedelta(milliseconds=1))

    assert report.failed_cancelled == [run_id]
    record = authority.store.get(run_id)
    assert record.phase is RunPhase.FAILED
    assert record.row.error is not None and record.row.error.startswith("cancelled: stop now")


# -- approval -------------------------------------------------------------------------


def test_a_run_needing_approval_waits_off_the_queue_until_approved(authority: Authority) -> None:
    run_id = new_run(authority, requires_approval=True, approval_timeout_ms=60_000)
    assert claim(authority) is None
    with pytest.raises(MoveRefused, match="waiting for approval") as refused:
        authority.kernel(run_id).authorize("GRANTED")
    assert refused.value.verdict == "wait"

    authority.kernel(run_id).approve("alice", "looked fine")

    record = authority.store.get(run_id)
    assert record.row.control.approval_state == "approved"
    assert record.row.control.approval_by == "alice"
    assert record.history[-1].transition.reason == "approved by alice: looked fine"
    assert claim(authority) == (run_id, authority.store.get(run_id).row.lease.token)  # type: ignore[union-attr]
    with pytest.raises(MoveRefused, match="approved already"):
        authority.kernel(run_id).approve("bob", None)


def test_reject_fails_the_run_with_the_decision(authority: Authority) -> None:
    run_id = new_run(authority, requires_approval=True)
    assert authority.kernel(run_id).reject("bob", "not today") is RunPhase.FAILED
    record = authority.store.get(run_id)
    assert record.row.error == "approval rejected by bob: not today"
    assert record.row.control.approval_state == "rejected"


def test_approving_a_run_that_needs_none_is_refused(authority: Authority) -> None:
    run_id = new_run(authority)
    before = authority.store.get(run_id)
    with pytest.raises(MoveRefused, match="needs no approval"):
        authority.kernel(run_id).approve("alice", None)
    assert authority.store.get(run_id) == before


def test_sweeper_expires_an_undecided_approval(authority: Authority) -> None:
    run_id = new_run(authority, requires_approval=True, approval_timeout_ms=5_000)
    deadline = authority.store.get(run_id).row.control.approval_deadline
    assert deadline is not None

    assert Sweeper(authority).tick(deadline - timedelta(seconds=1)).failed_approval_expired == []
    report = Sweeper(authority).tick(deadline + timedelta(milliseconds=1))

    assert report.failed_approval_expired == [run_id]
    record = authority.store.get(run_id)
    assert record.phase is RunPhase.FAILED
    assert record.row.control.approval_state == "expired"
    assert record.row.error is not None and record.row.error.startswith("approval expired")


def test_a_policy_can_ask_for_approval_at_authorization(authority: Authority) -> None:
    run_id = new_run(authority)
    claimed = claim(authority)
    assert claimed is not None
    worker = authority.kernel(run_id, claimed[1])

    assert worker.authorize("APPROVAL_REQUIRED", "payments need a second pair of eyes") is (
        RunPhase.CREATED
    )

    record = authority.store.get(run_id)
    assert record.row.lease is None and record.row.control.approval_state == "pending"
    assert claim(authority) is None
    authority.kernel(run_id).approve(None, None)
    again = claim(authority)
    assert again is not None
    assert authority.kernel(run_id, again[1]).authorize("GRANTED") is RunPhase.AUTHORIZED


# -- retries, results, schedule ----------------------------------------------------------


def test_failed_attempts_are_retried_after_their_backoff(authority: Authority) -> None:
    policy = RetryPolicy(backoff_ms=1000, multiplier=2.0, max_backoff_ms=1500)
    run_id, token = executing_leased(authority, retry=policy, max_attempts=3)
    now = authority.clock()

    phase = authority.kernel(run_id, token, now=now).execution_complete(False, "boom 1")

    assert phase is RunPhase.EXECUTING
    row = authority.store.get(run_id).row
    assert row.attempt == 2 and row.lease is None and row.error == "boom 1"
    assert row.control.not_before is not None
    assert now + timedelta(milliseconds=1000) <= row.control.not_before
    assert row.control.not_before <= now + timedelta(milliseconds=1100)
    assert claim(authority, now + timedelta(milliseconds=900)) is None
    second = claim(authority, now + timedelta(milliseconds=1200))
    assert second is not None and second[0] == run_id

    later = now + timedelta(milliseconds=1200)
    authority.kernel(run_id, second[1], now=later).execution_complete(False, "boom 2")
    row = authority.store.get(run_id).row
    assert row.control.not_before is not None  # capped: 1500 ms, not 2000
    assert later + timedelta(milliseconds=1500) <= row.control.not_before
    assert row.control.not_before <= later + timedelta(milliseconds=1650)

    third = claim(authority, later + timedelta(seconds=2))
    assert third is not None
    final = authority.kernel(run_id, third[1]).execution_complete(False, "boom 3")
    assert final is RunPhase.GOVERNANCE_CHECK  # no attempt left: governed once, at the end
    record = authority.store.get(run_id)
    errors = [h.transition.details.get("error") for h in record.history]
    assert [e for e in errors if e] == ["boom 1", "boom 2"]
    assert record.history[-1].transition.reason == "execution failed: boom 3"


def test_without_a_retry_policy_a_failure_ends_execution(authority: Authority) -> None:
    run_id, token = executing_leased(authority, max_attempts=3)
    assert authority.kernel(run_id, token).execution_complete(False, "x") is (
        RunPhase.GOVERNANCE_CHECK
    )


def test_the_result_is_kept_and_bounded(authority: Authority) -> None:
    run_id, token = executing_leased(authority)
    limit = authority.settings.max_result_bytes
    before = authority.store.get(run_id)
    with pytest.raises(InvalidRequest, match="ROK_MAX_RESULT_BYTES"):
        authority.kernel(run_id, token).execution_complete(True, result="x" * limit)
    assert authority.store.get(run_id) == before

    authority.kernel(run_id, token).execution_complete(True, result={"summary": "ok", "n": 3})
    assert authority.store.get(run_id).row.control.result == {"summary": "ok", "n": 3}


def test_not_before_holds_a_run_back_from_claims(authority: Authority) -> None:
    start = authority.clock() + timedelta(minutes=5)
    run_id = new_run(authority, not_before=start)
    assert claim(authority) is None
    claimed = claim(authority, start)
    assert claimed is not None and claimed[0] == run_id


def test_sweeper_fails_a_run_nobody_started_in_time(authority: Authority) -> None:
    run_id = new_run(authority, queue_timeout_ms=2_000)
    created = authority.store.get(run_id).row.created_at

    assert Sweeper(authority).tick(created + timedelta(seconds=1)).failed_unstarted == []
    report = Sweeper(authority).tick(created + timedelta(seconds=3))

    assert report.failed_unstarted == [run_id]
    record = authority.store.get(run_id)
    assert record.phase is RunPhase.FAILED
    assert record.row.error is not None and record.row.error.startswith("never started")


def test_an_expired_lease_after_a_cancel_fails_the_run(authority: Authority) -> None:
    run_id, _ = executing_leased(authority, max_attempts=3)
    authority.kernel(run_id).cancel("stop")
    lease = authority.store.get(run_id).row.lease
    assert lease is not None

    report = Sweeper(authority).tick(lease.expires_at + timedelta(milliseconds=1))

    assert report.failed_cancelled == [run_id] and report.released == []
    assert authority.store.get(run_id).phase is RunPhase.FAILED


def test_release_gives_the_run_back_and_changes_nothing_else(authority: Authority) -> None:
    run_id = new_run(authority)
    claimed = claim(authority)
    assert claimed is not None
    before = authority.store.get(run_id)

    authority.kernel(run_id, claimed[1]).release()

    after = authority.store.get(run_id)
    assert after.row.lease is None and after.history == before.history
    assert after.row.attempt == before.row.attempt
    again = claim(authority)
    assert again is not None and again[0] == run_id
    with pytest.raises(LeaseLost):
        authority.kernel(run_id, claimed[1]).release()  # the old token is fenced


# -- rules a user adds -------------------------------------------------------------------


class NoStartsOnFriday:
    name = "no_friday_starts"

    def judge(self, move: Move, run: RunRow, now: datetime) -> Ruling:
        if move.name == "authorize" and run.handler == "job":
            return Ruling.wait(self.name, "no deploys on Friday")
        return ACCEPT


def test_a_users_rule_refuses_a_move_and_nothing_is_written(migrated_url: str) -> None:
    from service.config import Settings

    authority = Authority(Settings(database_url=migrated_url), rules=[NoStartsOnFriday()])
    try:
        run_id = new_run(authority)
        before = authority.store.get(run_id)
        with pytest.raises(MoveRefused, match="no deploys on Friday") as refused:
            authority.kernel(run_id).authorize("GRANTED")
        assert refused.value.rule == "no_friday_starts" and refused.value.verdict == "wait"
        assert authority.store.get(run_id) == before
        authority.kernel(run_id).fail("not this week")  # other moves are not its business
    finally:
        authority.close()
