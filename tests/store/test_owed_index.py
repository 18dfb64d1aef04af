"""The owed feed stays flat: it reads its index alone, and migration 0005 fills the index."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, text

from service.authority import Authority
from service.kernel.kernel import create_rok
from service.model.phases import RunPhase
from service.store import migrations
from service.store.owed import OwedQuery, feed_query
from service.store.tables import pending_expectations
from tests.support.authorities import checked_authority
from tests.support.owed import assert_owed_index_exact, expected_owed, stored_owed


@pytest.mark.parametrize(
    ("phase", "tenant_id", "index"),
    [
        (None, None, "ix_pending_expectations_feed"),
        (RunPhase.GOVERNANCE_CHECK, None, "ix_pending_expectations_phase"),
        (None, "acme", "ix_pending_expectations_feed"),
        (RunPhase.CREATED, "acme", "ix_pending_expectations_phase"),
    ],
)
def test_the_feed_reads_only_its_index_in_its_order(
    authority: Authority, phase: RunPhase | None, tenant_id: str | None, index: str
) -> None:
    """No table of runs, contracts or acks is read, and nothing is sorted: the cost is
    the rows answered, however many runs finished (they have no row in the index)."""
    query = feed_query(OwedQuery("incidents", 50, phase, tenant_id)).compile(
        authority.database.engine, compile_kwargs={"literal_binds": True}
    )
    with authority.database.read() as conn:
        if authority.database.is_postgres:
            conn.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table would seqscan
            plan = " ".join(row[0] for row in conn.execute(text(f"EXPLAIN {query}")))
        else:
            plan = " ".join(row[3] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {query}")))
    assert index in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
    for table in ("runs", "expectations", "acks"):
        assert f" {table} " not in f" {plan} ".replace("(", " "), plan


def _runs_in_every_state(authority: Authority) -> None:
    def new(**fields: Any) -> Any:
        kernel = create_rok(store=authority.store, settings=authority.settings, **fields)
        kernel.declare_expectations()
        return kernel

    new(tenant_id="acme", handler="h")
    new().authorize("GRANTED", begin_execution=True)
    partly = new()
    partly.authorize("GRANTED", begin_execution=True)
    partly.ack("logs", "start_trace")
    partly.ack("policies", "evaluate_policy", error="denied by a rule")
    checking = new()
    checking.authorize("GRANTED", begin_execution=True)
    checking.execution_complete(False, "boom")
    judged = new()
    judged.authorize("GRANTED", begin_execution=True)
    judged.execution_complete(True)
    judged.governance_check(timeout_ms=0)
    judged.ack("incidents", "create_incident")  # late
    new().fail("abandoned")
    new(expectations=[("billing", "charge", None)])


def test_migration_0005_fills_the_index_from_the_live_runs(migrated_url: str) -> None:
    with checked_authority(migrated_url) as authority:
        _runs_in_every_state(authority)
        owed = expected_owed(authority.store)
        assert len({row[0] for row in owed}) == 5, owed  # the live, unjudged runs
        # as a database written before 0005 has it: no index at all
        with authority.database.write() as conn:
            conn.execute(delete(pending_expectations))
        migrations.downgrade(migrated_url, "0004")
        migrations.upgrade(migrated_url)
        assert stored_owed(authority.store) == owed
        assert_owed_index_exact(authority.store)
