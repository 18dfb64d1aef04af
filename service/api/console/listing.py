"""The runs list: its filters, the counts per phase, and which runs need an operator.

A run is marked *stale* when its finalize_run deadline passed and it is not
terminal, or its reconciliation is STALE; *incomplete* when its
reconciliation is INCOMPLETE (evidence missing, failed, unexpected, or a
governance check that did not pass: the recomputed reconciliation never
clears what the recorded verdict found missing or failed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import func, select

from service.api.schemas import check_storable
from service.errors import InvalidRequest
from service.model.audit import FINALIZE_RUN, ReconciliationStatus
from service.model.phases import TERMINAL_PHASES, RunPhase
from service.store.database import Database
from service.store.records import RunFilter
from service.store.summaries import RunSummary, list_summaries
from service.store.tables import runs

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class ListQuery:
    """What the list shows: the store's filter, plus created-since, the page size and cursor."""

    filters: RunFilter
    since: datetime | None
    limit: int
    cursor: str | None

    def params(self, **changes: Any) -> dict[str, str]:
        """The query string of this list with `changes` (None drops a parameter)."""
        current: dict[str, Any] = {
            "phase": self.filters.phase.value if self.filters.phase else None,
            "tenant": self.filters.tenant_id,
            "handler": self.filters.handler,
            "since": self.since.strftime("%Y-%m-%dT%H:%M:%S") if self.since else None,
            "limit": self.limit if self.limit != DEFAULT_LIMIT else None,
            "cursor": self.cursor,
        }
        current.update(changes)
        return {name: str(value) for name, value in current.items() if value is not None}


def parse_query(raw: Mapping[str, str]) -> ListQuery:
    """The list's query string; InvalidRequest naming the parameter for a bad value.

    Empty values are absent ones (the filter form sends every field). `since`
    is a date or a date and time, in UTC unless it names its zone.
    """
    given = {name: value.strip() for name, value in raw.items() if value.strip()}
    for name, value in given.items():
        try:
            check_storable(value, name)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
    phase = None
    if "phase" in given:
        try:
            phase = RunPhase(given["phase"].upper())
        except ValueError:
            names = ", ".join(p.value for p in RunPhase)
            raise InvalidRequest(f"phase {given['phase']!r} is not one of {names}") from None
    limit = DEFAULT_LIMIT
    if "limit" in given:
        if not given["limit"].isdigit() or not 1 <= int(given["limit"]) <= MAX_LIMIT:
            raise InvalidRequest(f"limit {given['limit']!r} is not a whole number 1-{MAX_LIMIT}")
        limit = int(given["limit"])
    return ListQuery(
        RunFilter(phase=phase, tenant_id=given.get("tenant"), handler=given.get("handler")),
        _since(given.get("since")),
        limit,
        given.get("cursor"),
    )


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"since {value!r} is not a date (2026-12-02) or a date and time (2026-12-02T09:30)"
        ) from None


def confined(query: ListQuery, tenant_id: str | None) -> ListQuery:
    """The query with the tenant the caller is confined to (deps.require_tenant's answer)."""
    return replace(query, filters=replace(query.filters, tenant_id=tenant_id))


def list_page(db: Database, query: ListQuery) -> tuple[list[RunSummary], str | None]:
    """A page of runs, newest first; created-since cuts the page where older runs begin.

    The store pages newest first, so the runs created since a time are a
    prefix of the list: once a page reaches an older run, no page follows.
    """
    page, next_cursor = list_summaries(db, query.filters, query.limit, query.cursor)
    if query.since is None:
        return page, next_cursor
    kept = [s for s in page if s.created_at >= query.since]
    return kept, next_cursor if len(kept) == len(page) else None


def phase_counts(db: Database, query: ListQuery) -> dict[RunPhase, int]:
    """How many runs are in each phase, under every filter but the phase (one query)."""
    counting = select(runs.c.phase, func.count()).group_by(runs.c.phase)
    if query.filters.tenant_id is not None:
        counting = counting.where(runs.c.tenant_id == query.filters.tenant_id)
    if query.filters.handler is not None:
        counting = counting.where(runs.c.handler == query.filters.handler)
    if query.since is not None:
        counting = counting.where(runs.c.created_at >= query.since)
    counts = dict.fromkeys(RunPhase, 0)
    with db.read() as conn:
        for phase, count in conn.execute(counting):
            counts[RunPhase(phase)] = int(count)
    return counts


def marks(summary: RunSummary, status: ReconciliationStatus, now: datetime) -> list[str]:
    """`stale` and/or `incomplete`: what about this run an operator must look at."""
    found = []
    finalize_due = next(
        (e.deadline for e in summary.expectations if e.pair == FINALIZE_RUN and e.deadline),
        None,
    )
    overdue = (
        summary.phase not in TERMINAL_PHASES and finalize_due is not None and now >= finalize_due
    )
    if status is ReconciliationStatus.STALE or overdue:
        found.append("stale")
    if status is ReconciliationStatus.INCOMPLETE:
        found.append("incomplete")
    return found
