"""Concurrency limits in the store: a slot per key taken by the claim, given back where
the lease ends (complete, fail, the sweeper), on both backends."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from service.authority import Authority
from service.errors import InvalidRequest
from service.store.limits import MAX_KEYS_PER_RUN, Room
from service.store.tables import concurrency_limits, runs
from service.sweeper import Sweeper
from tests.support.authorities import checked_authority
from tests.support.limits import (
    assert_counts_match_leases,
    busy,
    claim,
    complete,
    create_run,
    in_use,
)


@pytest.fixture
def limited(migrated_url: str) -> Iterator[Authority]:
    """An Authority whose tenants may each hold 2 leased runs (ROK_TENANT_CONCURRENCY=2)."""
    with checked_authority(migrated_url, tenant_concurrency=2) as current:
        yield current


def test_a_full_key_holds_its_runs_until_a_slot_comes_back(authority: Authority) -> None:
    authority.limits.set_limit("gpu", 1, authority.clock())
    first, second, third = (create_run(authority, keys=["gpu"]) for _ in range(3))

    taken = claim(authority)
    assert taken is not None and taken[0] == first
    assert claim(authority) is None  # the one gpu slot is taken
    assert in_use(authority)["gpu"] == 1

    complete(authority, *taken)
    assert busy(authority) == {}
    again = claim(authority)
    assert again is not None and again[0] == second

    authority.kernel(again[0], again[1]).fail("given up")
    assert busy(authority) == {}
    last = claim(authority)
    assert last is not None and last[0] == third


def test_runs_without_the_full_key_are_claimed_past_those_with_it(authority: Authority) -> None:
    authority.limits.set_limit("gpu", 1, authority.clock())
    gpu_first = create_run(authority, keys=["gpu"])
    create_run(authority, keys=["gpu", "eu"])
    plain = create_run(authority, keys=["eu"])
    claimed = [claim(authority), claim(authority), claim(authority)]
    assert [c[0] if c else None for c in claimed] == [gpu_first, plain, None]
    assert busy(authority) == {"gpu": 1, "eu": 1, "tenant:": 2}
    assert_counts_match_leases(authority)


def test_each_tenant_gets_the_default_limit_and_a_set_one_overrides_it(
    limited: Authority,
) -> None:
    a_runs = [create_run(limited, tenant="a") for _ in range(4)]
    create_run(limited, tenant="b")
    got = [claim(limited) for _ in range(4)]
    assert sorted(limited.store.get(g[0]).row.tenant_id or "" for g in got if g) == [
        "a",
        "a",
        "b",
    ]
    assert got[3] is None
    usage = {u.key: u for u in limited.limits.usage()}
    assert (usage["tenant:a"].max_concurrent, usage["tenant:a"].effective_max) == (None, 2)
    assert usage["tenant:a"].in_use == 2

    limited.limits.set_limit("tenant:a", 3, limited.clock())
    more = claim(limited)
    assert more is not None and more[0] == a_runs[2]
    assert claim(limited) is None


def test_a_lowered_limit_ends_no_lease_and_holds_claims_until_below_it(
    authority: Authority,
) -> None:
    for _ in range(4):
        create_run(authority, keys=["db"])
    holders = [claim(authority), claim(authority)]
    authority.limits.set_limit("db", 1, authority.clock())
    assert in_use(authority)["db"] == 2
    assert claim(authority) is None
    first = holders[0]
    assert first is not None
    complete(authority, *first)
    assert claim(authority) is None  # 1 in use, and the limit is 1
    second = holders[1]
    assert second is not None
    complete(authority, *second)
    assert claim(authority) is not None


def test_a_limit_of_zero_holds_every_claim_of_the_key(authority: Authority) -> None:
    authority.limits.set_limit("paused", 0, authority.clock())
    create_run(authority, keys=["paused"])
    assert claim(authority) is None
    authority.limits.set_limit("paused", 1, authority.clock())
    assert claim(authority) is not None


@pytest.mark.parametrize("attempts", [1, 2])
def test_the_sweeper_gives_back_the_slots_of_an_expired_lease(
    authority: Authority, attempts: int
) -> None:
    authority.limits.set_limit("gpu", 1, authority.clock())
    run_id = create_run(authority, keys=["gpu"], max_attempts=attempts)
    now = authority.clock()
    taken = claim(authority, lease_ms=1000, now=now)
    assert taken is not None and busy(authority) == {"gpu": 1, "tenant:": 1}

    report = Sweeper(authority).tick(now + timedelta(seconds=2))

    assert (report.released if attempts == 2 else report.failed_worker_lost) == [run_id]
    assert busy(authority) == {}
    again = claim(authority, now=now + timedelta(seconds=2))
    if attempts == 2:  # back in the queue as its next attempt, and claimable
        assert again is not None and again[0] == run_id
        assert busy(authority) == {"gpu": 1, "tenant:": 1}
        assert_counts_match_leases(authority)
        complete(authority, *again)
        assert busy(authority) == {}
    else:
        assert again is None


def test_a_run_failed_before_any_claim_gives_back_nothing(authority: Authority) -> None:
    authority.limits.set_limit("gpu", 1, authority.clock())
    waiting = create_run(authority, keys=["gpu"])
    held = create_run(authority, keys=["gpu"])
    taken = claim(authority)
    assert taken is not None and taken[0] == waiting
    authority.kernel(held).fail("cancelled before it started")
    assert in_use(authority)["gpu"] == 1  # still the claimed run's slot


def test_room_says_which_key_is_full(authority: Authority) -> None:
    authority.limits.set_limit("gpu", 1, authority.clock())
    assert authority.limits.room("t", ["gpu"]) == Room(True)
    create_run(authority, tenant="t", keys=["gpu"])
    assert claim(authority) is not None
    room = authority.limits.room("t", ["gpu", "other"])
    assert room == Room(False, "concurrency key 'gpu' is full: 1 of 1 slots in use")
    assert authority.limits.room("t", ["other"]) == Room(True)


def test_a_tenant_scoped_claim_serves_only_its_tenant(limited: Authority) -> None:
    create_run(limited, tenant="a")
    mine = create_run(limited, tenant="b")
    got = claim(limited, tenant="b")
    assert got is not None and got[0] == mine
    assert claim(limited, tenant="b") is None


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([f"k{i}" for i in range(MAX_KEYS_PER_RUN + 1)], "at most 8 concurrency_keys"),
        (["gpu", "gpu"], "listed twice"),
        (["has space"], "is not a key"),
        (["-leading"], "is not a key"),
        (["x" * 101], "is not a key"),
        (["tenant:other"], "the tenants' own"),
    ],
)
def test_bad_keys_are_refused_and_nothing_is_written(
    authority: Authority, keys: list[str], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        create_run(authority, keys=keys)
    with authority.database.read() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(concurrency_limits)).scalar_one() == 0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("gpu", -1, "out of range"),
        ("bad key", 1, "is not a key"),
        ("tenant:", 1, "tenant:<tenant_id>"),
    ],
)
def test_bad_limits_are_refused_and_nothing_is_written(
    authority: Authority, key: str, value: int, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        authority.limits.set_limit(key, value, authority.clock())
    assert authority.limits.usage() == []


def test_a_released_run_wakes_its_idle_lane(authority: Authority) -> None:
    run_id = create_run(authority, tenant="a", max_attempts=2)
    now = authority.clock()
    assert claim(authority, lease_ms=1000, now=now) is not None
    # the lane had no other run: a claim finding nothing marks it idle
    assert claim(authority, now=now) is None
    with contextlib.closing(authority.database.engine.connect()) as conn:
        waiting = select(concurrency_limits.c.waiting).where(concurrency_limits.c.key == "tenant:a")
        assert conn.execute(waiting).scalar_one() is False
    later = now + timedelta(seconds=2)
    assert Sweeper(authority).tick(later).released == [run_id]
    again = claim(authority, now=later)
    assert again is not None and again[0] == run_id
