"""Limits under concurrent claims: claimers released together never pass a key's limit.

On PostgreSQL the claimers race for real (SKIP LOCKED on runs, the guarded
UPDATE of each key's row); on SQLite BEGIN IMMEDIATE makes them take turns.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from functools import partial

from service.authority import Authority
from tests.support.authorities import open_authority
from tests.support.limits import (
    assert_counts_match_leases,
    busy,
    claim,
    complete,
    create_run,
    in_use,
)
from tests.support.races import race

CLAIMERS = 8


def _claim_all(replica: Authority, worker: str) -> list[str]:
    """Claim until nothing is claimable; the runs taken, still leased."""
    taken: list[str] = []
    while (got := claim(replica, worker)) is not None:
        taken.append(got[0])
    return taken


def test_claimers_racing_for_a_key_take_exactly_its_slots(
    authority: Authority, migrated_url: str
) -> None:
    authority.limits.set_limit("gpu", 3, authority.clock())
    gpu = {create_run(authority, tenant=f"t{i % 3}", keys=["gpu"]) for i in range(12)}
    free = {create_run(authority, tenant=f"t{i % 3}") for i in range(6)}
    with contextlib.ExitStack() as stack:
        replicas = [
            stack.enter_context(contextlib.closing(open_authority(migrated_url)))
            for _ in range(CLAIMERS)
        ]
        outcomes = race([partial(_claim_all, r, f"w{i}") for i, r in enumerate(replicas)])
    assert [value for kind, value in outcomes if kind != "ok"] == []
    claimed = [run_id for _, ids in outcomes for run_id in ids]
    assert Counter(claimed).most_common(1)[0][1] == 1  # no run twice
    assert len(set(claimed) & gpu) == 3  # the limit, exactly: no more, none lost
    assert free <= set(claimed)
    assert in_use(authority)["gpu"] == 3
    assert_counts_match_leases(authority)


def test_claimers_racing_for_a_tenant_take_exactly_its_default_limit(
    migrated_url: str,
) -> None:
    with contextlib.ExitStack() as stack:
        replicas = [
            stack.enter_context(
                contextlib.closing(open_authority(migrated_url, tenant_concurrency=2))
            )
            for _ in range(CLAIMERS)
        ]
        first = replicas[0]
        for tenant in ("a", "b", "c"):
            for _ in range(6):
                create_run(first, tenant=tenant)
        outcomes = race([partial(_claim_all, r, f"w{i}") for i, r in enumerate(replicas)])
        assert [value for kind, value in outcomes if kind != "ok"] == []
        claimed = [run_id for _, ids in outcomes for run_id in ids]
        tenants = Counter(first.store.get(run_id).row.tenant_id for run_id in claimed)
        assert tenants == {"a": 2, "b": 2, "c": 2}
        assert busy(first) == {"tenant:a": 2, "tenant:b": 2, "tenant:c": 2}
        assert_counts_match_leases(first)
        # and all of it comes back, finished by racing threads too
        tokens = {
            run_id: lease.token
            for run_id in claimed
            if (lease := first.store.get(run_id).row.lease) is not None
        }
        done = race([partial(complete, first, run_id, token) for run_id, token in tokens.items()])
        assert [value for kind, value in done if kind != "ok"] == []
        assert busy(first) == {}
