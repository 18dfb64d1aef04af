"""Migration 0006 on a database with runs: each tenant gets its lane, marked waiting when
it has a waiting run, its in_use the runs it holds leased, whose ends give slots back."""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from service.model.phases import utc_now
from service.store import migrations
from tests.support.authorities import open_authority
from tests.support.limits import claim, in_use

INSERT_RUN = text(
    "INSERT INTO runs (id, tenant_id, phase, run_timeout_ms, history_length, available, "
    "lease_worker_id, lease_token, lease_expires_at, created_at, updated_at) VALUES "
    "(:id, :tenant, 'CREATED', 30000, 0, :available, :worker, :token, :expires, :at, :at)"
)


def test_lanes_and_slots_of_the_runs_stored_before(database_url: str) -> None:
    migrations.upgrade(database_url, "0004")
    now = utc_now()
    leased, waiting, idle_done, unnamed = (str(uuid.uuid4()) for _ in range(4))
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.begin() as conn:
        for run_id, tenant, available, token in (
            (leased, "a", False, "t" * 32),
            (waiting, "a", True, None),
            (idle_done, "b", False, None),
            (unnamed, None, True, None),
        ):
            conn.execute(
                INSERT_RUN,
                {
                    "id": run_id,
                    "tenant": tenant,
                    "available": available,
                    "worker": "w-old" if token else None,
                    "token": token,
                    "expires": now + timedelta(hours=1) if token else None,
                    "at": now,
                },
            )
        stored = conn.execute(text("SELECT count(*) FROM runs")).scalar_one()
    engine.dispose()
    assert stored == 4

    migrations.upgrade(database_url)

    with contextlib.closing(open_authority(database_url)) as authority:
        usage = {u.key: u.in_use for u in authority.limits.usage()}
        assert usage == {"tenant:a": 1, "tenant:b": 0, "tenant:": 0}
        assert authority.store.get(leased).row.concurrency_keys is None
        # the lease taken before the migration gives its slot back when it ends
        authority.kernel(leased).fail("ended after the upgrade")
        assert in_use(authority)["tenant:a"] == 0
        # both waiting runs are claimable (their lanes were marked waiting), in turn
        claimed = {claim(authority), claim(authority)}
        assert {c[0] for c in claimed if c} == {waiting, unnamed}
        assert claim(authority) is None
        assert in_use(authority) == {"tenant:a": 1, "tenant:b": 0, "tenant:": 1}
