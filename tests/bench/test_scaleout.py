"""W7 on PostgreSQL, on a tiny plan: every way and level is measured and reported.

The scale-out workload runs only where --workers is allowed (PostgreSQL), so
the quick bench (SQLite) notes it and moves on; this runs it on windows a
fraction of a second long. A benchmark, not a timed test: only that every
figure was measured, never what it is.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from service.bench import scaleout
from service.bench.context import Context
from service.bench.figures import Figures
from service.bench.plan import QUICK
from tests.support.databases import postgres_server_url

# two clients: at 32, each window waits seconds for the lifecycles in flight to finish
TINY = replace(QUICK, warmup_s=0.1, duration_s=0.3, scale_out_clients=(2,), workloads=("W7",))


@pytest.mark.postgres
def test_w7_measures_one_process_two_workers_and_two_replicas() -> None:
    figures = Figures()
    context = Context("postgres", TINY, figures, postgres_server_url())
    scaleout.run(context)
    assert not context.notes and not context.failed
    for way in scaleout.WAYS:
        for clients in TINY.scale_out_clients:
            key = f"postgres.w7.{way.name}.c{clients}"
            for name in ("requests_per_s", "server_cpu_ms", "client_cores", "database_cores"):
                figure = figures.get(f"{key}.{name}")
                assert figure is not None and math.isfinite(figure.median), (key, name)
            errors = figures.get(f"{key}.errors")
            assert errors is not None and errors.median == 0
            if way.name != "one":
                share = figures.get(f"{key}.busiest_share")
                assert share is not None and 0.5 <= share.median <= 1.0
                ratio = figures.get(f"postgres.w7.c{clients}.{way.name}_ratio")
                assert ratio is not None and ratio.target is not None
                assert math.isfinite(ratio.median)


def test_w7_is_a_note_on_sqlite() -> None:
    context = Context("sqlite", TINY, Figures(), postgres_server_url.__name__)
    scaleout.run(context)
    assert len(context.figures) == 0
    assert "W7 not run" in context.notes[0]
