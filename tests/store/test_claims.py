"""Claims: each waiting run goes to exactly one claimer, across threads and processes."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from functools import partial
from typing import Any

import pytest

from service.authority import Authority
from service.errors import LeaseLost, RunNotFound
from service.kernel.kernel import create_rok
from tests.support.authorities import open_authority
from tests.support.races import race

RUNS = 40


def create_runs(authority: Authority, count: int, **fields: Any) -> list[str]:
    ids = []
    for _ in range(count):
        kernel = create_rok(store=authority.store, settings=authority.settings, **fields)
        kernel.declare_expectations()
        ids.append(kernel.run_id)
    return ids


def test_claim_order_priority_then_oldest_and_handler_filter(authority: Authority) -> None:
    low = create_runs(authority, 1, handler="a")[0]
    high = create_runs(authority, 1, handler="b", priority=5)[0]
    older_low_twin = create_runs(authority, 1, handler="a")[0]
    now = authority.clock()
    first = authority.leases.claim("w", 1000, None, now)
    assert first is not None and first[0].id == high
    only_a = authority.leases.claim("w", 1000, ["a"], now)
    assert only_a is not None and only_a[0].id == low
    assert authority.leases.claim("w", 1000, ["b"], now) is None
    last = authority.leases.claim("w", 1000, None, now)
    assert last is not None and last[0].id == older_low_twin
    assert authority.leases.claim("w", 1000, None, now) is None


def test_claim_does_not_change_the_phase_and_records_the_lease(authority: Authority) -> None:
    run_id = create_runs(authority, 1)[0]
    claimed = authority.leases.claim("w1", 5000, None, authority.clock())
    assert claimed is not None
    record, lease = claimed
    assert record.id == run_id and record.phase.value == "CREATED" and record.history == []
    assert record.row.lease == lease
    assert lease.worker_id == "w1" and len(lease.token) == 32


def test_heartbeat_extends_only_the_holders_live_lease(authority: Authority) -> None:
    create_runs(authority, 1)
    now = authority.clock()
    claimed = authority.leases.claim("w1", 1000, None, now)
    assert claimed is not None
    run_id, token = claimed[0].id, claimed[1].token
    renewed = authority.leases.heartbeat(run_id, "w1", token, 5000, now)
    assert renewed.expires_at == now + timedelta(milliseconds=5000)
    with pytest.raises(LeaseLost, match="leased to worker w1, not w2"):
        authority.leases.heartbeat(run_id, "w2", None, 5000, now)
    with pytest.raises(LeaseLost, match="not the run's current lease"):
        authority.leases.heartbeat(run_id, "w1", "0" * 32, 5000, now)
    with pytest.raises(LeaseLost, match="expired"):
        authority.leases.heartbeat(run_id, "w1", token, 5000, now + timedelta(seconds=6))
    with pytest.raises(RunNotFound):
        authority.leases.heartbeat("00000000-0000-0000-0000-000000000000", "w1", token, 1, now)
    assert authority.store.get(run_id).row.lease == renewed


def test_a_claim_sent_again_gets_the_lease_it_already_took(authority: Authority) -> None:
    first_run, second_run = create_runs(authority, 2)
    now = authority.clock()
    first = authority.leases.claim("w1", 5000, None, now, claim_id="c-1")
    assert first is not None and first[0].id == first_run

    again = authority.leases.claim("w1", 5000, None, now + timedelta(seconds=1), claim_id="c-1")

    assert again is not None
    assert (again[0].id, again[1]) == (first_run, first[1])  # same run, same token and expiry
    assert authority.store.get(second_run).row.lease is None  # nothing else was taken
    other = authority.leases.claim("w1", 5000, None, now, claim_id="c-2")
    assert other is not None and other[0].id == second_run


def test_a_claim_id_is_the_claiming_worker_s_own(authority: Authority) -> None:
    _, second_run = create_runs(authority, 2)
    now = authority.clock()
    authority.leases.claim("w1", 5000, None, now, claim_id="same")
    taken = authority.leases.claim("w2", 5000, None, now, claim_id="same")
    assert taken is not None and taken[0].id == second_run
    assert taken[0].row.lease is not None and taken[0].row.lease.worker_id == "w2"


def test_a_claim_id_stops_replaying_once_its_lease_is_over(authority: Authority) -> None:
    expired_run, failed_run, spare = create_runs(authority, 3)
    now = authority.clock()
    authority.leases.claim("w1", 1000, None, now, claim_id="old")
    later = now + timedelta(seconds=2)
    # an expired lease is not handed out again: the sweeper owns that run now
    fresh = authority.leases.claim("w1", 1000, None, later, claim_id="old")
    assert fresh is not None and fresh[0].id == failed_run
    authority.kernel(failed_run).fail("cancelled by an operator")
    # a finished run drops its lease, and with it the claim
    third = authority.leases.claim("w1", 1000, None, later, claim_id="old")
    assert third is not None and third[0].id == spare
    assert authority.store.get(expired_run).row.lease is not None


def test_threads_racing_for_runs_never_share_one(authority: Authority, migrated_url: str) -> None:
    expected = set(create_runs(authority, RUNS))
    workers = 8
    with contextlib.ExitStack() as stack:
        # each thread its own engine: as separate as replicas can be in one process
        replicas = [
            stack.enter_context(contextlib.closing(open_authority(migrated_url)))
            for _ in range(workers)
        ]

        def claimer(index: int) -> list[str]:
            mine = replicas[index]
            claimed: list[str] = []
            while True:
                got = mine.leases.claim(f"w{index}", 60_000, None, mine.clock())
                if got is None:
                    return claimed
                claimed.append(got[0].id)

        outcomes = race([partial(claimer, i) for i in range(workers)])
    errors = [value for kind, value in outcomes if kind != "ok"]
    assert errors == []
    claimed = [run_id for _, ids in outcomes for run_id in ids]
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert set(claimed) == expected


CLAIMER = """
import json, sys
from service.authority import Authority
from service.config import Settings
authority = Authority(Settings(database_url=sys.argv[1]))
sys.stdin.readline()  # start together
ids = []
while (got := authority.leases.claim(sys.argv[2], 60000, None, authority.clock())) is not None:
    ids.append(got[0].id)
print(json.dumps(ids))
"""


def test_processes_racing_for_runs_never_share_one(authority: Authority, migrated_url: str) -> None:
    expected = set(create_runs(authority, RUNS))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, migrated_url, f"p{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    claimed: list[str] = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        claimed += json.loads(out)
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert set(claimed) == expected


@pytest.mark.parametrize("handlers", [None, ["a"], ["a", "b"]])
def test_the_claim_reads_only_the_index_of_waiting_runs(
    authority: Authority, handlers: list[str] | None
) -> None:
    from sqlalchemy import text

    from service.store.leases import claim_query

    query = claim_query(handlers).compile(
        authority.database.engine, compile_kwargs={"literal_binds": True}
    )
    with authority.database.read() as conn:
        if authority.database.is_postgres:
            conn.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table would seqscan
            plan = " ".join(row[0] for row in conn.execute(text(f"EXPLAIN {query}")))
        else:
            plan = " ".join(row[3] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {query}")))
    assert "ix_runs_claimable" in plan, plan
    if handlers is None or len(handlers) == 1:
        # read in claim order: no sort of the waiting runs (it grew with the queue);
        # several handlers are merged by a sort of their waiting runs
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
