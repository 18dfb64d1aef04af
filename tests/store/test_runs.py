"""The run repository on both backends: creation, idempotency, listing, transactions,
the indexes that hold invariants, and timestamps."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.exc import IntegrityError, StatementError

from service.errors import (
    IdempotencyConflict,
    InvalidRequest,
    PhaseTransitionError,
    RunAlreadyExists,
    RunNotFound,
)
from service.model.audit import FINALIZE_RUN
from service.model.phases import RunPhase, utc_now
from service.store.database import Database
from service.store.records import RunChanges
from service.store.runs import RunFilter, RunStore, encode_cursor
from service.store.signals import Signals
from service.store.tables import acks, expectations, transitions
from tests.store.conftest import DEFAULT_CONTRACT, new_run

T0 = datetime(2024, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)


def count(store: RunStore, table: Any, run_id: str) -> int:
    with store.db.read() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(table).where(table.c.run_id == run_id)
            ).scalar_one()
        )


def move(store: RunStore, run_id: str, *path: RunPhase) -> None:
    for phase in path:
        with store.transaction(run_id, utc_now) as tx:
            tx.transition(phase, f"to {phase}")


# -- create --------------------------------------------------------------------------


def test_create_writes_the_run_and_its_contract(store: RunStore) -> None:
    new = new_run(tenant_id="t1", handler="h", input={"a": [1, "b"]}, priority=3)
    assert store.create(new) == (new.id, True)
    record = store.get(new.id)
    assert record.phase is RunPhase.CREATED
    assert record.history == []
    assert record.acks == []
    assert [(e.domain, e.action, e.deadline_ms) for e in record.expectations] == DEFAULT_CONTRACT
    assert all(e.deadline is None for e in record.expectations)
    row = record.row
    assert (row.tenant_id, row.handler, row.input, row.priority) == ("t1", "h", {"a": [1, "b"]}, 3)
    assert (row.attempt, row.max_attempts, row.history_length) == (1, 1, 0)
    assert row.lease is None
    assert row.created_at == row.updated_at == new.created_at
    assert store.exists(new.id)


def test_create_without_a_contract(store: RunStore) -> None:
    new = new_run(contract=[])
    store.create(new)
    assert store.get(new.id).expectations == []


def test_create_is_one_transaction(store: RunStore) -> None:
    # the second expectation violates the contract's primary key: the run goes too
    broken = new_run(contract=[("a", "b", 1), ("a", "b", 2)])
    with pytest.raises((IntegrityError, RunAlreadyExists)):
        store.create(broken)
    assert not store.exists(broken.id)
    assert count(store, expectations, broken.id) == 0


def test_create_an_existing_id_raises(store: RunStore) -> None:
    first = new_run("run-1")
    store.create(first)
    with pytest.raises(RunAlreadyExists, match="run-1"):
        store.create(new_run("run-1", handler="other"))
    assert store.get("run-1").row.handler is None
    assert count(store, expectations, "run-1") == len(DEFAULT_CONTRACT)


def test_idempotency_replay_returns_the_same_run(store: RunStore) -> None:
    first = new_run(scope="t\x1fkey-1")
    assert store.create(first) == (first.id, True)
    replay = new_run(scope="t\x1fkey-1")  # another generated id, same fingerprint
    assert store.create(replay) == (first.id, False)
    assert not store.exists(replay.id)
    assert count(store, expectations, first.id) == len(DEFAULT_CONTRACT)


def test_idempotency_conflict_names_the_key(store: RunStore) -> None:
    store.create(new_run(scope="t\x1fkey-2"))
    with pytest.raises(IdempotencyConflict, match="key-2") as caught:
        store.create(new_run(scope="t\x1fkey-2", fingerprint="0" * 64))
    assert caught.value.key == "key-2"


def test_idempotency_scopes_are_separate(store: RunStore) -> None:
    a = new_run(scope="tenant-a\x1fk")
    b = new_run(scope="tenant-b\x1fk")
    assert store.create(a) == (a.id, True)
    assert store.create(b) == (b.id, True)


# -- list --------------------------------------------------------------------------


def create_listed(store: RunStore, total: int) -> list[str]:
    """`total` runs, three per timestamp (ties broken by id); newest-first order returned."""
    created = []
    for i in range(total):
        new = new_run(
            f"run-{i:03d}",
            created_at=T0 + timedelta(seconds=i // 3),
            tenant_id="even" if i % 2 == 0 else "odd",
            handler=f"h{i % 3}",
        )
        store.create(new)
        created.append(new)
    created.sort(key=lambda n: (n.created_at, n.id), reverse=True)
    return [n.id for n in created]


def walk(store: RunStore, filters: RunFilter, limit: int) -> tuple[list[str], int]:
    seen: list[str] = []
    pages = 0
    cursor = None
    while True:
        records, cursor = store.list(filters, limit, cursor)
        pages += 1
        assert len(records) <= limit
        seen += [r.id for r in records]
        if cursor is None:
            return seen, pages
        assert pages < 100


def test_list_is_newest_first(store: RunStore) -> None:
    expected = create_listed(store, 7)
    records, cursor = store.list(RunFilter(), 50, None)
    assert [r.id for r in records] == expected
    assert cursor is None
    assert all(r.expectations and r.history == [] for r in records)


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 11, 12])
def test_list_pages_have_no_duplicates_and_no_gaps(store: RunStore, limit: int) -> None:
    expected = create_listed(store, 12)
    seen, pages = walk(store, RunFilter(), limit)
    assert seen == expected
    assert pages == -(-12 // limit)  # the last full page already says "no more"


def test_list_filters(store: RunStore) -> None:
    expected = create_listed(store, 9)
    move(store, "run-004", RunPhase.AUTHORIZED)
    move(store, "run-007", RunPhase.AUTHORIZED, RunPhase.EXECUTING)
    move(store, "run-001", RunPhase.FAILED)

    def ids(filters: RunFilter) -> list[str]:
        return walk(store, filters, 2)[0]

    assert ids(RunFilter(phase=RunPhase.AUTHORIZED)) == ["run-004"]
    assert ids(RunFilter(phase=RunPhase.CREATED)) == [
        i for i in expected if i not in {"run-004", "run-007", "run-001"}
    ]
    assert ids(RunFilter(tenant_id="odd")) == [i for i in expected if int(i[-3:]) % 2 == 1]
    assert ids(RunFilter(handler="h1")) == [i for i in expected if int(i[-3:]) % 3 == 1]
    assert ids(RunFilter(tenant_id="even", handler="h0")) == ["run-006", "run-000"]
    assert ids(RunFilter(tenant_id="nobody")) == []


def test_list_a_page_is_stable_when_newer_runs_arrive(store: RunStore) -> None:
    expected = create_listed(store, 6)
    first, cursor = store.list(RunFilter(), 3, None)
    store.create(new_run("run-newest", created_at=T0 + timedelta(days=1)))
    second, last = store.list(RunFilter(), 3, cursor)
    assert [r.id for r in first + second] == expected
    assert last is None


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "",
        base64.urlsafe_b64encode(b"[1]").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(json.dumps(["2024-01-01T00:00:00", "x"]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps(["2024-01-01T00:00:00+00:00", 5]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"at": 1}).encode()).decode(),
    ],
)
def test_list_refuses_a_bad_cursor(store: RunStore, cursor: str) -> None:
    with pytest.raises(InvalidRequest, match="cursor"):
        store.list(RunFilter(), 10, cursor)


def test_list_accepts_a_cursor_it_encoded(store: RunStore) -> None:
    expected = create_listed(store, 6)
    cursor = encode_cursor(T0 + timedelta(seconds=1), "run-004")
    records, _ = store.list(RunFilter(), 10, cursor)
    assert [r.id for r in records] == expected[expected.index("run-004") + 1 :]


# -- transactions --------------------------------------------------------------------


def test_transaction_on_an_unknown_run(store: RunStore) -> None:
    with (
        pytest.raises(RunNotFound, match="no-such-run"),
        store.transaction("no-such-run", lambda: T0),
    ):
        pytest.fail("the block must not run")
    with pytest.raises(RunNotFound):
        store.get("no-such-run")
    with pytest.raises(RunNotFound):
        store.governance_wait_state("no-such-run")
    assert store.exists("no-such-run") is False


def test_a_failed_transaction_block_writes_nothing(store: RunStore) -> None:
    new = new_run()
    store.create(new)
    before = store.get(new.id)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction(new.id, utc_now) as tx:
        tx.transition(RunPhase.AUTHORIZED, "granted", changes=RunChanges(clock_started_at=tx.now))
        tx.add_ack("incidents", "create_incident", "inc-1", None)
        tx.record_governance(False, {"status": "half done"})
        raise Boom
    assert store.get(new.id) == before
    assert count(store, transitions, new.id) == 0
    assert count(store, acks, new.id) == 0


def test_a_transaction_writes_history_and_row_together(store: RunStore) -> None:
    new = new_run()
    store.create(new)
    now = utc_now()
    with store.transaction(new.id, lambda: now) as tx:
        entry = tx.transition(RunPhase.AUTHORIZED, "granted", {"decision": "GRANTED"})
        assert tx.row.phase is RunPhase.AUTHORIZED
        assert tx.row.history_length == 1
    record = store.get(new.id)
    assert record.phase is RunPhase.AUTHORIZED
    assert record.row.updated_at == now
    assert [h.transition for h in record.history] == [entry]
    assert record.history[0].attempt == 1


def test_a_transition_is_guarded_by_phase_and_history_length(store: RunStore) -> None:
    new = new_run()
    store.create(new)
    before = store.get(new.id)
    with (
        pytest.raises(PhaseTransitionError, match="moved concurrently"),
        store.transaction(new.id, utc_now) as tx,
    ):
        # what a writer that bypassed the row lock would have seen
        tx.row = dataclasses.replace(tx.row, history_length=7)
        tx.transition(RunPhase.AUTHORIZED)
    assert store.get(new.id) == before


def test_expectation_deadlines_follow_the_clock_start(store: RunStore) -> None:
    new = new_run(contract=[("a", "b", 1_500), ("c", "d", None)])
    store.create(new)
    with store.transaction(new.id, lambda: T0) as tx:
        tx.transition(RunPhase.AUTHORIZED, changes=RunChanges(clock_started_at=T0))
        assert [e.deadline for e in tx.expectations()] == [
            T0 + timedelta(milliseconds=1_500),
            None,
        ]
    assert [e.deadline for e in store.get(new.id).expectations] == [
        T0 + timedelta(milliseconds=1_500),
        None,
    ]


# -- indexes holding invariants -------------------------------------------------------


def insert_ack(store: RunStore, run_id: str, domain: str, action: str) -> None:
    with store.db.write() as conn:
        conn.execute(insert(acks).values(run_id=run_id, domain=domain, action=action, at=utc_now()))


def test_only_one_finalize_run_ack_per_run(store: RunStore) -> None:
    first, second = new_run(), new_run()
    store.create(first)
    store.create(second)
    insert_ack(store, first.id, *FINALIZE_RUN)
    with pytest.raises(IntegrityError):
        insert_ack(store, first.id, *FINALIZE_RUN)
    insert_ack(store, second.id, *FINALIZE_RUN)  # per run, not global
    # other pairs may be acked any number of times (the second one is drift)
    insert_ack(store, first.id, "incidents", "create_incident")
    insert_ack(store, first.id, "incidents", "create_incident")
    insert_ack(store, first.id, "orchestrator", "other")
    insert_ack(store, first.id, "orchestrator", "other")
    assert [a.pair for a in store.get(first.id).acks].count(FINALIZE_RUN) == 1
    assert count(store, acks, first.id) == 5


def test_one_history_slot_per_sequence_number(store: RunStore) -> None:
    new = new_run()
    store.create(new)
    row = {
        "run_id": new.id,
        "seq": 1,
        "attempt": 1,
        "from_phase": "CREATED",
        "to_phase": "AUTHORIZED",
        "at": utc_now(),
    }
    with store.db.write() as conn:
        conn.execute(insert(transitions).values(**row))
    with pytest.raises(IntegrityError), store.db.write() as conn:
        conn.execute(insert(transitions).values(**row))


def test_children_need_an_existing_run(store: RunStore) -> None:
    with pytest.raises(IntegrityError):
        insert_ack(store, "no-such-run", "incidents", "create_incident")


# -- timestamps -------------------------------------------------------------------------


def test_datetimes_come_back_aware_utc_and_equal(store: RunStore) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    created = datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=india)
    new = new_run(created_at=created)
    store.create(new)
    moved_at = datetime(2024, 7, 1, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=-7)))
    with store.transaction(new.id, lambda: moved_at) as tx:
        tx.transition(RunPhase.AUTHORIZED, changes=RunChanges(clock_started_at=moved_at))
        tx.add_ack("logs", "start_trace", None, None)
    record = store.get(new.id)
    stamps = [
        record.row.created_at,
        record.row.updated_at,
        record.row.clock_started_at,
        record.history[0].transition.at,
        record.acks[0].at,
        *[e.deadline for e in record.expectations],
    ]
    for stamp in stamps:
        assert stamp is not None
        assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)
    assert record.row.created_at == created
    assert record.row.created_at.hour == 18  # 23:59 at +05:30 is 18:29 UTC
    assert record.history[0].transition.at == moved_at
    assert record.acks[0].at == moved_at
    assert record.row.created_at.microsecond == 999999


def test_naive_datetimes_are_refused(store: RunStore) -> None:
    naive = new_run(created_at=datetime(2024, 1, 1, 12, 0))
    with pytest.raises((ValueError, StatementError), match="naive"):
        store.create(naive)
    assert not store.exists(naive.id)


# -- consistent reads ---------------------------------------------------------------------


def read_while_a_move_commits(url: str, run_id: str, reader: str) -> Any:
    """Read through a second store; commit a move after its first statement.

    A read is one snapshot: whatever commits after it began must not show in
    part of what it returns (the row from before the move, the history after).
    """
    writer = RunStore(Database(url), Signals())
    reading = RunStore(Database(url), Signals())
    fired = threading.Event()

    def move_in_between(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if fired.is_set() or "FROM runs" not in statement:
            return
        fired.set()
        thread = threading.Thread(target=move, args=(writer, run_id, RunPhase.EXECUTING))
        thread.start()
        thread.join()

    event.listen(reading.db.engine, "after_cursor_execute", move_in_between)
    try:
        if reader == "get":
            return reading.get(run_id)
        records, _ = reading.list(RunFilter(), 10, None)
        return next(r for r in records if r.id == run_id)
    finally:
        assert fired.is_set()
        reading.db.dispose()
        writer.db.dispose()


@pytest.mark.parametrize("reader", ["get", "list"])
def test_a_read_is_one_consistent_snapshot(store: RunStore, migrated_url: str, reader: str) -> None:
    new = new_run()
    store.create(new)
    move(store, new.id, RunPhase.AUTHORIZED)
    record = read_while_a_move_commits(migrated_url, new.id, reader)
    assert store.get(new.id).phase is RunPhase.EXECUTING  # the move did commit
    last = record.history[-1].transition.to_phase if record.history else RunPhase.CREATED
    assert (record.phase, record.row.history_length) == (last, len(record.history)), (
        f"torn read: row says {record.phase} after {record.row.history_length} moves, "
        f"history says {last} after {len(record.history)}"
    )
