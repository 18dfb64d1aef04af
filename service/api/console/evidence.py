"""A run's contract against its acks, pair by pair, and the fields no section shows.

The status of each pair comes from the run's reconciliation as the API serves
it (service.model.audit.reconcile): a pair is the worst of what the
reconciliation says of it, and OK only when it was acked once, in time and
without an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.model.audit import FINALIZE_RUN

# the worst first: a pair is shown with the first of these the reconciliation gives it
PAIR_STATUSES = ("STALE", "MISSING", "FAILED", "INVALID", "DRIFT", "PENDING", "OK")

SHOWN_FIELDS = frozenset(
    {
        "id",
        "tenant_id",
        "handler",
        "phase",
        "attempt",
        "max_attempts",
        "created_at",
        "created_by",
        "updated_at",
        "error",
        "lease",
        "governance",
        "history",
        "expectations",
        "acks",
        "incidents",
        "reconciliation",
    }
)
"""The run's fields the page has a section or a header line for; it lists the others."""


@dataclass(frozen=True)
class PairRow:
    """One line of the contract table: an expectation (or an unexpected pair) and its acks."""

    domain: str
    action: str
    expected: bool
    deadline_ms: int | None
    deadline: Any
    status: str
    acks: Sequence[Mapping[str, Any]] = field(default_factory=list)


def _pairs(items: Any) -> set[tuple[str, str]]:
    return {(str(p[0]), str(p[1])) for p in items or ()}


def pair_status(pair: tuple[str, str], reconciliation: Mapping[str, Any], acked: bool) -> str:
    """The worst status the reconciliation gives `pair` (see PAIR_STATUSES)."""
    if pair == FINALIZE_RUN and reconciliation.get("stale"):
        return "STALE"
    for status, key in (
        ("MISSING", "missing"),
        ("FAILED", "failed"),
        ("INVALID", "invalid"),
        ("DRIFT", "drift"),
        ("PENDING", "pending"),
    ):
        if pair in _pairs(reconciliation.get(key)):
            return status
    return "OK" if acked else "PENDING"


def contract_rows(run: Mapping[str, Any]) -> list[PairRow]:
    """The contract in its declared order, then every acked pair it does not name (drift)."""
    reconciliation = run["reconciliation"]
    by_pair: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for ack in run["acks"]:
        by_pair.setdefault((str(ack["domain"]), str(ack["action"])), []).append(ack)
    rows = []
    for e in run["expectations"]:
        pair = (str(e["domain"]), str(e["action"]))
        acks = by_pair.pop(pair, [])
        rows.append(
            PairRow(
                pair[0],
                pair[1],
                True,
                e["deadline_ms"],
                e["deadline"],
                pair_status(pair, reconciliation, any(not a["late"] for a in acks)),
                acks,
            )
        )
    for pair, acks in by_pair.items():
        rows.append(PairRow(pair[0], pair[1], False, None, None, "DRIFT", acks))
    return rows


def other_fields(run: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The run's fields no section of the page shows, in the API's order.

    Whatever the API adds to a run (a result, an approval, a cancellation
    request) is listed here as soon as the presenter serves it.
    """
    return [(name, value) for name, value in run.items() if name not in SHOWN_FIELDS]


def is_scalar(value: Any) -> bool:
    """A value shown on one line (a time as a time); anything else is shown as JSON."""
    return value is None or isinstance(value, str | int | float | bool | datetime)
