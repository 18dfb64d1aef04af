"""Verifying sealed histories: recompute each run's chain and say where it first breaks.

A run's chain holds when its genesis (T0 declaration and contract) and every
transition and ack, in `chain_seq` order 1, 2, …, recompute to the seals
stored with them, and the run's `chain_length` / `chain_head` name the last
of them. The first place it does not is reported as `BrokenAt(kind, seq)`:

- `contract` (seq 0): the run's declaration or contract no longer matches its
  genesis seal (told apart while the run has no entry yet; once it has some,
  such an edit shows as its first entry, whose seal covers the genesis);
- `transition` / `ack` (its chain_seq): that entry was edited, or its place in
  the chain changed (a repeated chain_seq, an entry beyond the run's head);
- `unsealed`: an entry (or the run) without a seal, e.g. written before
  migration 0004 (seq: its chain_seq, 0 when it has none);
- `missing`: no entry where the chain has one: deleted from the middle (a
  chain_seq gap) or from the end (fewer entries than the run's head names).

Runs are read a page at a time, each page one snapshot and three queries
(runs, their contracts, their entries), whatever the page size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Select, select

from service.store.chain import (
    ACK_FIELDS,
    DECLARATION_FIELDS,
    EXPECTATION_FIELDS,
    TRANSITION_FIELDS,
    Values,
    same_seal,
    seal_ack,
    seal_genesis,
    seal_transition,
)
from service.store.database import Database
from service.store.tables import acks, expectations, runs, transitions

BrokenKind = Literal["contract", "transition", "ack", "unsealed", "missing"]
VERIFY_PAGE = 500

_Seal = Callable[[bytes, str, Values], str]
_SEALS: dict[str, _Seal] = {"transition": seal_transition, "ack": seal_ack}

_RUN_COLUMNS = [runs.c[name] for name in DECLARATION_FIELDS] + [
    runs.c.chain_length,
    runs.c.chain_head,
]
_CONTRACT_COLUMNS = [expectations.c.run_id] + [expectations.c[n] for n in EXPECTATION_FIELDS]
_TRANSITION_COLUMNS = [transitions.c[n] for n in TRANSITION_FIELDS] + [transitions.c.hash]
_ACK_COLUMNS = [acks.c[n] for n in ACK_FIELDS] + [acks.c.hash]


@dataclass(frozen=True)
class BrokenAt:
    kind: BrokenKind
    seq: int


@dataclass(frozen=True)
class ChainReport:
    """One run's verdict: how many entries were recomputed, and where the chain broke."""

    run_id: str
    tenant_id: str | None
    checked: int
    first_broken: BrokenAt | None

    @property
    def intact(self) -> bool:
        return self.first_broken is None


def verify_run(conn: Connection, key: bytes, run_id: str) -> ChainReport | None:
    """The report of one run, read on `conn`; None when there is no such run."""
    found = conn.execute(select(*_RUN_COLUMNS).where(runs.c.id == run_id)).first()
    if found is None:
        return None
    return verify_page(conn, key, [found._mapping])[0]


def verify_every_run(db: Database, key: bytes, page: int = VERIFY_PAGE) -> Iterator[ChainReport]:
    """Reports of every run, in id order, `page` runs per read snapshot."""
    after: str | None = None
    while True:
        query = select(*_RUN_COLUMNS).order_by(runs.c.id).limit(page)
        if after is not None:
            query = query.where(runs.c.id > after)
        with db.read() as conn:
            found = [r._mapping for r in conn.execute(query)]
            reports = verify_page(conn, key, found)
        yield from reports
        if len(found) < page:
            return
        after = str(found[-1]["id"])


def verify_page(conn: Connection, key: bytes, found: Sequence[Values]) -> list[ChainReport]:
    """Reports of the runs `found` (rows of _RUN_COLUMNS): their children in two queries."""
    ids = [str(r["id"]) for r in found]
    if not ids:
        return []
    contracts: dict[str, list[Values]] = {i: [] for i in ids}
    for e in conn.execute(_children(_CONTRACT_COLUMNS, expectations.c.run_id, ids)):
        contracts[e.run_id].append(e._mapping)
    entries: dict[str, list[tuple[str, Values]]] = {i: [] for i in ids}
    for kind, columns, owner in (
        ("transition", _TRANSITION_COLUMNS, transitions.c.run_id),
        ("ack", _ACK_COLUMNS, acks.c.run_id),
    ):
        for entry in conn.execute(_children(columns, owner, ids)):
            entries[entry.run_id].append((kind, entry._mapping))
    return [verify_chain(key, r, contracts[str(r["id"])], entries[str(r["id"])]) for r in found]


def load_contract(conn: Connection, run_id: str) -> list[Values]:
    """The run's expectations as the genesis seal covers them."""
    query = _children(_CONTRACT_COLUMNS, expectations.c.run_id, [run_id])
    return [e._mapping for e in conn.execute(query)]


def _children(columns: list[Any], owner: Any, ids: list[str]) -> Select[Any]:
    if len(ids) == 1:
        return select(*columns).where(owner == ids[0])
    return select(*columns).where(owner.in_(ids))


def verify_chain(
    key: bytes,
    run: Values,
    contract: Sequence[Values],
    entries: Sequence[tuple[str, Values]],
) -> ChainReport:
    """Recompute one run's chain from its genesis; stop at the first break."""
    checked = 0

    def report(broken: BrokenAt | None) -> ChainReport:
        return ChainReport(str(run["id"]), run["tenant_id"], checked, broken)

    if run["chain_head"] is None:
        return report(BrokenAt("unsealed", 0))
    length: int = run["chain_length"]
    previous = seal_genesis(key, run, contract)
    # entries without a place in the chain first: they predate it
    ordered = sorted(entries, key=lambda e: (e[1]["chain_seq"] is not None, e[1]["chain_seq"] or 0))
    for kind, entry in ordered:
        seq: int | None = entry["chain_seq"]
        if seq is None or entry["hash"] is None:
            return report(BrokenAt("unsealed", seq or 0))
        if seq > checked + 1:
            return report(BrokenAt("missing", checked + 1))
        if seq < checked + 1:  # a place in the chain taken twice
            return report(BrokenAt(_kind(kind), seq))
        checked += 1
        # past the head the run row names, or not what was sealed
        if seq > length or not same_seal(entry["hash"], _SEALS[kind](key, previous, entry)):
            return report(BrokenAt(_kind(kind), seq))
        previous = entry["hash"]
    if checked < length:
        return report(BrokenAt("missing", checked + 1))
    if not same_seal(run["chain_head"], previous):
        # no entry: the declaration changed since T0; else the head names another end
        return report(BrokenAt("contract", 0) if length == 0 else BrokenAt("missing", checked + 1))
    return report(None)


def _kind(kind: str) -> BrokenKind:
    return "ack" if kind == "ack" else "transition"
