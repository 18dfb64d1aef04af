"""Pruning alerts: only events older than the cutoff that are done (delivered or failed);
one still to be delivered is kept whatever its age. Both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from service.authority import Authority
from service.store.retention import prune_events
from service.store.tables import events

CUTOFF = datetime(2026, 1, 1, tzinfo=UTC)


def _event(event_id: str, state: str, created_at: datetime) -> dict[str, object]:
    return {
        "id": event_id,
        "type": "run.failed",
        "run_id": "00000000-0000-4000-8000-000000000000",
        "tenant_id": None,
        "body": "{}",
        "created_at": created_at,
        "state": state,
        "attempts": 1,
    }


def test_prune_events_deletes_old_finished_alerts_in_batches(authority: Authority) -> None:
    old, new = CUTOFF - timedelta(days=30), CUTOFF + timedelta(days=1)
    rows = [_event(f"msg_old_delivered_{i}", "delivered", old) for i in range(5)]
    rows += [
        _event("msg_old_failed", "failed", old),
        _event("msg_old_pending", "pending", old),
        _event("msg_new_delivered", "delivered", new),
    ]
    with authority.database.write() as conn:
        conn.execute(insert(events), rows)

    assert prune_events(authority.database, CUTOFF, batch_size=2) == 6

    with authority.database.read() as conn:
        left = sorted(conn.execute(select(events.c.id)).scalars())
    assert left == ["msg_new_delivered", "msg_old_pending"]
    assert prune_events(authority.database, CUTOFF, batch_size=2) == 0
