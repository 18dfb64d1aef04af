"""Racing the end of a run: many threads finalize, fail and ack one run at once.

Exactly one terminal transition and one finalize_run ack; every loser gets a
PhaseTransitionError, never another error. Side effects are counted, not timed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import pytest
from sqlalchemy import select

from service.authority import Authority
from service.errors import PhaseTransitionError
from service.kernel.kernel import RunOrchestrationKernel
from service.model.audit import FINALIZE_RUN
from service.model.phases import TERMINAL_PHASES, RunPhase
from service.store.tables import acks
from tests.support.invariants import assert_run_valid
from tests.support.races import Outcome, race
from tests.support.runs import RunFactory

THREADS = 20
ROUNDS = 3

Action = Callable[[RunOrchestrationKernel, int], Any]


def race_on_run(authority: Authority, run_id: str, actions: Sequence[Action]) -> list[Outcome]:
    """`actions[i](kernel, i)` from one thread each, each with its own kernel of the run."""
    kernels = [authority.kernel(run_id) for _ in actions]
    return race([partial(act, kernels[i], i) for i, act in enumerate(actions)])


def finalize(kernel: RunOrchestrationKernel, i: int) -> Any:
    return kernel.finalize()


def fail(kernel: RunOrchestrationKernel, i: int) -> Any:
    return kernel.fail(f"racer {i}")


def ack(kernel: RunOrchestrationKernel, i: int) -> Any:
    return kernel.ack("racers", f"action-{i}", result_id=f"r-{i}")


def acks_in_commit_order(authority: Authority, run_id: str) -> list[tuple[str, str, bool]]:
    with authority.database.read() as conn:
        rows = conn.execute(
            select(acks.c.domain, acks.c.action, acks.c.late)
            .where(acks.c.run_id == run_id)
            .order_by(acks.c.id)
        ).all()
    return [(r.domain, r.action, bool(r.late)) for r in rows]


@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_finalize_fail_and_ack_race_on_one_run(
    authority: Authority, runs: RunFactory, round_number: int
) -> None:
    run_id = runs.at(RunPhase.GOVERNANCE_CHECK, checked=True)
    before = authority.store.get(run_id)
    kinds = [(finalize, fail, ack)[(i + round_number) % 3] for i in range(THREADS)]
    results = race_on_run(authority, run_id, kinds)

    movers = [(k, r) for k, r in zip(kinds, results, strict=True) if k is not ack]
    ackers = [(k, r) for k, r in zip(kinds, results, strict=True) if k is ack]
    won = [value for _, (kind, value) in movers if kind == "ok"]
    lost = [value for _, (kind, value) in movers if kind == "error"]
    assert len(won) == 1, results
    assert len(lost) == len(movers) - 1, lost
    assert all(isinstance(e, PhaseTransitionError) for e in lost), lost
    assert all(kind == "ok" for _, (kind, _) in ackers), ackers

    record = authority.store.get(run_id)
    assert_run_valid(record)
    assert record.phase is won[0]
    assert record.phase in TERMINAL_PHASES
    new_moves = record.history[len(before.history) :]
    terminal_moves = [h for h in new_moves if h.transition.to_phase in TERMINAL_PHASES]
    assert len(terminal_moves) == 1
    assert sum(1 for a in record.acks if a.pair == FINALIZE_RUN) == 1

    # every racing ack stored once, and late: the verdict was recorded before the race
    # (tests/kernel/test_verdict.py), and it never changes, whoever commits first
    stored = acks_in_commit_order(authority, run_id)
    racing = [(d, a) for d, a, _ in stored if d == "racers"]
    assert sorted(racing) == sorted(
        ("racers", f"action-{i}") for i in range(THREADS) if kinds[i] is ack
    )
    assert (*FINALIZE_RUN, False) in stored
    for domain, _, late in stored:
        if domain == "racers":
            assert late is True, stored
    returned_late = {r[1].action: r[1].late for _, r in ackers}
    assert returned_late == {a: late for d, a, late in stored if d == "racers"}


def test_many_finalizers_have_one_winner(authority: Authority, runs: RunFactory) -> None:
    run_id = runs.at(RunPhase.FINALIZING)
    results = race_on_run(authority, run_id, [finalize] * THREADS)
    assert [v for k, v in results if k == "ok"] == [RunPhase.COMPLETED]
    errors = [v for k, v in results if k == "error"]
    # the losers are refused by the rule that authorizes only a CREATED run
    assert len(errors) == THREADS - 1
    assert all(isinstance(e, PhaseTransitionError) for e in errors), errors
    record = authority.store.get(run_id)
    assert sum(1 for a in record.acks if a.pair == FINALIZE_RUN) == 1
    assert [h.transition.to_phase for h in record.history].count(RunPhase.COMPLETED) == 1


def test_many_authorizers_have_one_winner(authority: Authority, runs: RunFactory) -> None:
    run_id = runs.create()

    def authorize(kernel: RunOrchestrationKernel, i: int) -> Any:
        return kernel.authorize("GRANTED" if i % 2 else "DENIED")

    results = race_on_run(authority, run_id, [authorize] * THREADS)
    won = [v for k, v in results if k == "ok"]
    assert len(won) == 1
    errors = [v for k, v in results if k == "error"]
    assert len(errors) == THREADS - 1  # refused by the rule: only a CREATED run is authorized
    assert all(isinstance(e, PhaseTransitionError) for e in errors), errors
    record = authority.store.get(run_id)
    assert len(record.history) == 1
    assert record.phase is won[0]
