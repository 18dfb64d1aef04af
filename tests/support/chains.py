"""Sealed histories for tests: a known key, a full lifecycle, and raw SQL to tamper with.

The edits go around rok entirely (their own engine, plain SQL), as someone
with write access to the database but not the history key would make them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from service.authority import Authority
from service.kernel.kernel import create_rok
from service.kernel.spec import AckSpec
from tests.support.authorities import open_authority

KEY = b"tests-history-key-0123456789abcdef"
OTHER_KEY = b"tests-history-key-fedcba9876543210"


def sealed_authority(url: str, key: bytes = KEY) -> Authority:
    """An Authority on `url` sealing with `key` (the caller closes it)."""
    return open_authority(url, history_key=key)


def lifecycle(authority: Authority, **spec: Any) -> str:
    """A run from creation to COMPLETED through every kind of write; its id.

    Entries, in chain order: 1 AUTHORIZED, 2 EXECUTING (one transaction),
    3-4 an ack batch, 5-6 single acks, 7 GOVERNANCE_CHECK, 8 FINALIZING,
    9 COMPLETED and 10 its finalize_run ack (one transaction).
    """
    kernel = create_rok(
        store=authority.store,
        settings=authority.settings,
        handler="job",
        input={"n": 1, "b": ["x", 2]},
        **spec,
    )
    kernel.declare_expectations()
    kernel.authorize("GRANTED", begin_execution=True)
    kernel.ack_many(
        [
            AckSpec("incidents", "create_incident", "inc-1", details={"severity": "low"}),
            AckSpec("policies", "evaluate_policy", "pol-1"),
        ]
    )
    kernel.ack("logs", "start_trace", "trace-1")
    kernel.ack("logs", "complete_trace", "trace-1")
    kernel.execution_complete(success=True)
    assert kernel.governance_check(require_all_acks=True).passed
    kernel.begin_finalization()
    kernel.finalize()
    return kernel.run_id


LIFECYCLE_ENTRIES = 10


def execute(url: str, sql: str, **params: Any) -> int:
    """Run one statement on `url` outside rok; the number of rows it touched."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            return conn.execute(text(sql), params).rowcount
    finally:
        engine.dispose()


def fetch(url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params))
    finally:
        engine.dispose()


def chain_of(url: str, run_id: str) -> list[tuple[str, int | None, str | None]]:
    """(table, chain_seq, hash) of every transition and ack of the run, in chain order."""
    rows = fetch(
        url,
        "SELECT 'transition', chain_seq, hash FROM transitions WHERE run_id = :id "
        "UNION ALL SELECT 'ack', chain_seq, hash FROM acks WHERE run_id = :id",
        id=run_id,
    )
    return sorted(((r[0], r[1], r[2]) for r in rows), key=lambda r: r[1] or 0)


def assert_sealed(authority: Authority, run_id: str) -> int:
    """Every entry has a seal and a place 1..N, the run's head names the last; N."""
    url = authority.database.url
    entries = chain_of(url, run_id)
    assert [seq for _, seq, _ in entries] == list(range(1, len(entries) + 1))
    assert all(seal is not None and len(seal) == 64 for _, _, seal in entries)
    [(length, head)] = fetch(
        url, "SELECT chain_length, chain_head FROM runs WHERE id = :id", id=run_id
    )
    assert length == len(entries)
    assert head == (entries[-1][2] if entries else head) and head is not None
    report = authority.store.verify(run_id)
    assert (report.intact, report.checked, report.first_broken) == (True, len(entries), None)
    return len(entries)
