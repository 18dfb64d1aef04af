"""Store races that involve no claim: creates, acks and guarded moves from many threads.

Threads are released together by a Barrier; the tests count what was written,
never how long it took.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import func, select

from service.errors import PhaseTransitionError, RunAlreadyExists
from service.model.phases import RunPhase, utc_now
from service.store.runs import RunStore
from service.store.tables import acks, expectations, runs, transitions
from tests.store.conftest import DEFAULT_CONTRACT, new_run
from tests.store.test_runs import count
from tests.support.races import Outcome, race

THREADS = 20


def race_threads(action: Callable[[int], Any]) -> list[Outcome]:
    """`action(i)` in THREADS threads released together; ("ok", value) or ("error", exc)."""
    return race([partial(action, i) for i in range(THREADS)])


def count_rows(store: RunStore, table: Any) -> int:
    with store.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_concurrent_creates_with_one_idempotency_key_make_one_run(store: RunStore) -> None:
    results = race_threads(lambda i: store.create(new_run(f"run-{i}", scope="t\x1fsame-key")))
    assert [kind for kind, _ in results] == ["ok"] * THREADS, results
    ids = {value[0] for _, value in results}
    assert len(ids) == 1
    assert Counter(value[1] for _, value in results) == {True: 1, False: THREADS - 1}
    assert count_rows(store, runs) == 1
    assert count_rows(store, expectations) == len(DEFAULT_CONTRACT)


def test_concurrent_creates_of_one_run_id_make_one_run(store: RunStore) -> None:
    results = race_threads(lambda i: store.create(new_run("run-same", handler=f"h{i}")))
    winners = [value for kind, value in results if kind == "ok"]
    losers = [value for kind, value in results if kind == "error"]
    assert winners == [("run-same", True)]
    assert len(losers) == THREADS - 1
    assert all(isinstance(error, RunAlreadyExists) for error in losers), losers
    assert count_rows(store, runs) == 1
    assert count(store, expectations, "run-same") == len(DEFAULT_CONTRACT)


def test_concurrent_acks_are_all_kept(store: RunStore) -> None:
    new = new_run()
    store.create(new)

    def ack(i: int) -> Any:
        with store.transaction(new.id, utc_now) as tx:
            return tx.add_ack("domain", f"action-{i % 5}", f"r-{i}", None)

    results = race_threads(ack)
    assert [kind for kind, _ in results] == ["ok"] * THREADS, results
    stored = store.get(new.id).acks
    assert sorted(a.result_id or "" for a in stored) == sorted(f"r-{i}" for i in range(THREADS))
    assert count(store, acks, new.id) == THREADS


def test_concurrent_guarded_moves_have_one_winner(store: RunStore) -> None:
    new = new_run()
    store.create(new)

    def authorize(i: int) -> Any:
        with store.transaction(new.id, utc_now) as tx:
            if tx.row.phase is not RunPhase.CREATED:
                raise PhaseTransitionError(new.id, tx.row.phase, RunPhase.AUTHORIZED)
            return tx.transition(RunPhase.AUTHORIZED, f"thread {i}")

    results = race_threads(authorize)
    winners = [value for kind, value in results if kind == "ok"]
    losers = [value for kind, value in results if kind == "error"]
    assert len(winners) == 1
    assert all(isinstance(error, PhaseTransitionError) for error in losers), losers
    record = store.get(new.id)
    assert record.phase is RunPhase.AUTHORIZED
    assert [h.transition for h in record.history] == winners
    assert count(store, transitions, new.id) == 1


def test_concurrent_creates_of_distinct_runs_all_succeed(store: RunStore) -> None:
    results = race_threads(lambda i: store.create(new_run(f"run-{i}", tenant_id="t")))
    assert sorted(value for _, value in results) == sorted(
        (f"run-{i}", True) for i in range(THREADS)
    )
    assert count_rows(store, runs) == THREADS
    assert count_rows(store, expectations) == THREADS * len(DEFAULT_CONTRACT)
