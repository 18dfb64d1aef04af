"""The owed feed's index as it must be: derived from a run's record, compared with the table.

`owed_pairs(record)` says what a run owes by the rules of service.store.owed
(live, unjudged, a domain expectation with no timely ack); `stored_owed`
reads what the index holds. A test that leaves runs behind compares the two.
"""

from __future__ import annotations

from sqlalchemy import select

from service.model.audit import ORCHESTRATOR_DOMAIN
from service.store.owed import OWING_PHASES
from service.store.records import RunFilter, RunRecord
from service.store.runs import RunStore
from service.store.tables import pending_expectations

Owed = set[tuple[str, str, str, str]]
"""(run_id, domain, action, phase)"""


def owed_pairs(record: RunRecord) -> Owed:
    row = record.row
    if row.phase not in OWING_PHASES or row.governance_recorded:
        return set()
    acked = {a.pair for a in record.acks if not a.late}
    return {
        (row.id, e.domain, e.action, row.phase.value)
        for e in record.expectations
        if e.domain != ORCHESTRATOR_DOMAIN and e.pair not in acked
    }


def expected_owed(store: RunStore) -> Owed:
    expected: Owed = set()
    cursor = None
    while True:
        records, cursor = store.list(RunFilter(), 500, cursor)
        for record in records:
            expected |= owed_pairs(record)
        if cursor is None:
            return expected


def stored_owed(store: RunStore) -> Owed:
    t = pending_expectations
    with store.db.read() as conn:
        rows = conn.execute(select(t.c.run_id, t.c.domain, t.c.action, t.c.phase)).all()
    return {(r.run_id, r.domain, r.action, r.phase) for r in rows}


def assert_owed_index_exact(store: RunStore) -> None:
    """The index holds exactly what the runs owe: nothing missing, nothing left behind."""
    expected, stored = expected_owed(store), stored_owed(store)
    assert stored == expected, {"missing": expected - stored, "left behind": stored - expected}
