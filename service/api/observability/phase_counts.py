"""rok_runs_by_phase: live runs per phase, counted in the database at scrape time.

Why a query and not a counter: every replica must report the same number,
and only the database knows moves made by the other replicas. Why only the
live phases: finished runs pile up for ever (a million COMPLETED rows is a
normal year), and counting them each scrape would grow with that history.
`phase IN (<the live phases>)` is a range read of ix_runs_phase_created
(phase leads it), so the query touches one index entry per live run and
never a finished one, on both databases (tests/api/test_metrics_phases.py
checks the plans); how many runs finished is what the per-replica
`rok_run_transitions_total{to_phase="COMPLETED"|"FAILED"}` counters say.

A scrape while the database is down still answers: without this gauge, and
with rok_database_up 0, so the counters are not lost with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Select, func, select
from sqlalchemy.exc import SQLAlchemyError

from service.authority import Authority
from service.model.phases import TERMINAL_PHASES, RunPhase
from service.store.tables import runs

log = logging.getLogger("rok.metrics")

LIVE_PHASES = tuple(p for p in RunPhase if p not in TERMINAL_PHASES)


def live_phase_counts_query() -> Select[Any]:
    return (
        select(runs.c.phase, func.count())
        .where(runs.c.phase.in_([p.value for p in LIVE_PHASES]))
        .group_by(runs.c.phase)
    )


_LIVE_PHASE_COUNTS = live_phase_counts_query()


def live_phase_counts(conn: Connection) -> dict[RunPhase, int]:
    """How many runs are in each live phase (0 for a phase with none)."""
    counts = dict.fromkeys(LIVE_PHASES, 0)
    for phase, count in conn.execute(_LIVE_PHASE_COUNTS):
        counts[RunPhase(phase)] = int(count)
    return counts


class LivePhaseCollector(Collector):
    """Reads the counts when the registry is collected (each scrape), never in between."""

    def __init__(self, authority: Callable[[], Authority | None]) -> None:
        self._authority = authority  # a getter: the lifespan opens the database later

    def describe(self) -> list[Any]:
        return []  # nothing to read when registered: the database may not be open yet

    def collect(self) -> Iterator[GaugeMetricFamily]:
        authority = self._authority()
        if authority is None:
            return
        up = GaugeMetricFamily(
            "rok_database_up", "1 when this scrape could read the database, else 0."
        )
        try:
            with authority.database.read() as conn:
                counts = live_phase_counts(conn)
        except SQLAlchemyError as exc:
            log.warning("metrics: cannot count runs by phase: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        gauge = GaugeMetricFamily(
            "rok_runs_by_phase",
            "Live runs per phase, read from the database (the same on every replica).",
            labels=["phase"],
        )
        for phase, count in counts.items():
            gauge.add_metric([phase.value], count)
        yield gauge
