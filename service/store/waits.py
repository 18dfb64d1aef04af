"""What a waiting governance check reads each time it is woken: one statement.

A check waits until no domain expectation of its run is outstanding, or the
run left GOVERNANCE_CHECK. `pending_expectations` (service.store.owed) holds
exactly the outstanding pairs of a live, unjudged run (a row per domain
expectation, gone as its timely ack lands or the verdict is recorded), so
the run's phase and whether it still owes anything are one indexed
statement, sent without a transaction around it on PostgreSQL: a thousand
waiting checks woken by their acks cost one round trip each, not five.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, exists, select

from service.errors import RunNotFound
from service.model.phases import RunPhase
from service.store.database import Database
from service.store.tables import pending_expectations, runs

_WAIT_STATE = select(
    runs.c.phase,
    runs.c.tenant_id,
    exists().where(pending_expectations.c.run_id == runs.c.id).label("owes"),
).where(runs.c.id == bindparam("run_id"))


@dataclass(frozen=True)
class WaitState:
    phase: RunPhase
    owes: bool
    """A domain expectation is still waiting for its ack (never once the verdict is recorded)."""


def wait_state(db: Database, run_id: str, tenant_id: str | None = None) -> WaitState:
    """The run's phase and whether it still owes evidence, read in one statement.

    With `tenant_id`, a run of another tenant does not exist (RunNotFound):
    its phase must not reach that tenant's caller.
    """
    with db.engine.connect() as conn:
        options = conn.execution_options(**db.dialect.statement_options())
        found = options.execute(_WAIT_STATE, {"run_id": run_id}).first()
    if found is None or tenant_id not in (None, found.tenant_id):
        raise RunNotFound(run_id)
    return WaitState(RunPhase(found.phase), bool(found.owes))
