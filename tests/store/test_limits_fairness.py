"""Fair claims: tenants are served in turn, priority still decides within a tenant,
and each query of the claim reads its index (flat with finished and waiting runs)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Select, insert, select, text

from service.authority import Authority
from service.store.leases import claim_query
from service.store.limits import SELECT_FULL_KEYS
from service.store.tables import concurrency_limits, run_concurrency_keys, runs
from service.store.turns import lane_probe, lanes_in_turn
from tests.support.authorities import open_authority
from tests.support.limits import claim, create_run

A_RUNS = 1000
B_RUNS = 10


def test_a_tenant_with_ten_runs_is_not_starved_by_one_with_a_thousand(
    authority: Authority,
) -> None:
    a_runs = [create_run(authority, tenant="a") for _ in range(A_RUNS)]
    b_runs = {create_run(authority, tenant="b") for _ in range(B_RUNS)}

    order: list[str] = []
    while len(order) < 100:  # workers claiming; A's 100th run is not even claimed yet
        got = claim(authority, f"w{len(order) % 4}")
        assert got is not None
        order.append(got[0])

    b_positions = [i for i, run_id in enumerate(order) if run_id in b_runs]
    assert len(b_positions) == B_RUNS
    # turns alternate: B's ten runs are among the first twenty claims
    assert b_positions == list(range(1, 2 * B_RUNS, 2))
    # and A's runs are claimed in its own order, oldest first
    assert [r for r in order if r not in b_runs] == a_runs[: 100 - B_RUNS]


def test_priority_decides_within_a_tenant_and_turns_between_tenants(
    authority: Authority,
) -> None:
    a_low = create_run(authority, tenant="a")
    a_high = create_run(authority, tenant="a", priority=5)
    b_low = create_run(authority, tenant="b")
    c_none = create_run(authority)
    claimed = [claim(authority) for _ in range(5)]
    order = [c[0] if c else None for c in claimed]
    # one run per tenant per round (the lane without a tenant is one too)
    assert set(order[:3]) == {a_high, b_low, c_none}
    assert order[3:] == [a_low, None]


def test_a_new_tenant_waits_one_turn_not_behind_the_queue(authority: Authority) -> None:
    for _ in range(20):
        create_run(authority, tenant="a")
    for _ in range(5):
        assert claim(authority) is not None
    late = create_run(authority, tenant="late")
    got = claim(authority)
    assert got is not None and got[0] == late


def test_claims_of_a_handler_pass_lanes_without_its_runs(authority: Authority) -> None:
    create_run(authority, tenant="a", handler="x")
    wanted = create_run(authority, tenant="b", handler="y")
    got = claim(authority, handlers=["y"])
    assert got is not None and got[0] == wanted
    assert claim(authority, handlers=["y"]) is None
    assert claim(authority, handlers=["x"]) is not None


FINISHED = 3000
WAITING_LANES = 40  # as many tenants as a deployment serves at once, 50 runs each


@pytest.fixture
def queued(migrated_url: str) -> Iterator[Authority]:
    """Finished runs, and waiting ones spread over tenants (a few without one); PostgreSQL
    then ANALYZEs, as autovacuum would (SQLite gets none: rok never runs one). The rows
    are bare (no history): only plans are read from them."""
    with contextlib.closing(open_authority(migrated_url)) as authority:
        _fill(authority)
        yield authority


def _fill(authority: Authority) -> None:
    now = authority.clock()
    rows = []
    for number in range(FINISHED + 2000):
        waiting = number >= FINISHED
        lane = number % WAITING_LANES
        tenant = None if lane == 0 else f"t{lane}"
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "tenant_id": tenant,
                "handler": f"h{number % 5}",
                "phase": "CREATED" if waiting else "COMPLETED",
                "run_timeout_ms": 30_000,
                "available": waiting,
                "created_at": now,
                "updated_at": now,
            }
        )
    with authority.database.write() as conn:
        conn.execute(insert(runs), rows)
        keyed = [r["id"] for r in rows if r["available"]][::3]
        conn.execute(
            insert(run_concurrency_keys),
            [{"run_id": run_id, "key": f"k{i % 200}"} for i, run_id in enumerate(keyed)],
        )
        conn.execute(
            insert(concurrency_limits),
            [{"key": f"k{i}", "max_concurrent": 1, "in_use": i % 2} for i in range(200)],
        )
        # the lanes: the waiting tenants', and many more tenants idle now
        conn.execute(
            insert(concurrency_limits),
            [
                {
                    "key": f"tenant:{'t' if i < WAITING_LANES else 'idle'}{i}",
                    "waiting": i < WAITING_LANES,
                }
                for i in range(1, 3000)
            ]
            + [{"key": "tenant:", "waiting": True}],
        )
    if authority.database.is_postgres:
        with authority.database.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()


def authority_is_sqlite(authority: Authority) -> bool:
    return authority.database.is_sqlite


def _plan(authority: Authority, query: Select[Any], params: dict[str, Any]) -> str:
    compiled = query.params(**params).compile(
        authority.database.engine, compile_kwargs={"literal_binds": True}
    )
    with authority.database.read() as conn:
        if authority.database.is_postgres:
            return " ".join(row[0] for row in conn.execute(text(f"EXPLAIN {compiled}")))
        return " ".join(row[3] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))


@pytest.mark.parametrize("handlers", [None, ["h2"]])
@pytest.mark.parametrize("full_keys", [[], ["gpu"]])
@pytest.mark.parametrize("named", [True, False])
def test_a_lane_is_read_through_the_index_of_its_waiting_runs(
    queued: Authority, handlers: list[str] | None, full_keys: list[str], named: bool
) -> None:
    probe = lane_probe(claim_query(handlers), full_keys, named)
    plan = _plan(queued, probe, {"lane_tenant": "t3"} if named else {})
    index = "ix_runs_claimable_by_tenant" + ("_handler" if handlers else "")
    if named or queued.database.is_sqlite:
        assert index in plan, plan
    else:
        # PostgreSQL orders by an index only after `=`, not `IS NULL`: the runs without
        # a tenant are read from the queue of all waiting runs (see service.store.turns)
        assert "ix_runs_claimable" in plan, plan
    # read in claim order: no sort of the tenant's waiting runs (it grew with the queue)
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
    if full_keys and authority_is_sqlite(queued):
        # a key lookup per candidate (PostgreSQL may hash the full keys' rows instead:
        # only live runs have them, see test_a_finished_run_leaves_no_key_rows)
        assert "sqlite_autoindex_run_concurrency_keys" in plan, plan


def test_the_turn_order_and_the_full_keys_are_read_through_their_indexes(
    queued: Authority,
) -> None:
    authority = queued
    lanes = _plan(authority, lanes_in_turn().params(default_max=2), {})
    # only the lanes with waiting runs are read (a sort of those is a sort of the
    # tenants served now, never of the idle ones or of any runs)
    assert "ix_concurrency_limits_turn" in lanes, lanes
    full = _plan(authority, SELECT_FULL_KEYS, {})
    assert "ix_concurrency_limits_full" in full, full


def test_a_finished_run_leaves_no_key_rows(authority: Authority) -> None:
    done = create_run(authority, keys=["gpu", "eu"])
    live = create_run(authority, keys=["gpu"])
    got = claim(authority)
    assert got is not None and got[0] == done
    authority.kernel(*got).fail("finished")
    authority.kernel(live).fail("cancelled before a claim")
    with authority.database.read() as conn:
        assert conn.execute(select(run_concurrency_keys)).all() == []
    assert authority.store.get(done).row.concurrency_keys == ["eu", "gpu"] or (
        authority.store.get(done).row.concurrency_keys == ["gpu", "eu"]
    )
