"""`rok bench --quick` runs end to end and writes well-formed figures.

A benchmark, not a timed test: nothing here judges a number against a wall
clock or a target; only that every figure was measured and reported.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REQUIRED = (
    "sqlite.w1.c8.lifecycles_per_s",
    "sqlite.w1.c8.requests_per_s",
    "sqlite.limit.bare.c8.requests_per_s",
    "sqlite.limit.write.c8.requests_per_s",
    "sqlite.w1.c8.ratio_writes",
    "sqlite.w1.c8.ratio_bare",
    "sqlite.w3.0.claim_p50_ms",
    "sqlite.w4.wake_p99_ms",
    "sqlite.w4.rss_per_check_kib",
    "sqlite.w5.rss_second_mib",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "service.bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (out / "bench.md").read_text().startswith("# rok bench")
    data: dict[str, object] = json.loads((out / "bench.json").read_text())
    return data


def test_every_figure_is_a_measured_number(report: dict[str, object]) -> None:
    figures = report["figures"]
    assert isinstance(figures, list) and figures
    for figure in figures:
        assert figure["samples"], figure["key"]
        for key in ("median", "min", "max"):
            value = figure[key]
            assert isinstance(value, float) and math.isfinite(value), (figure["key"], key)
        assert figure["min"] <= figure["median"] <= figure["max"]
        assert figure["met"] in (True, False, None)


def test_the_issue_figures_are_there(report: dict[str, object]) -> None:
    keys = {figure["key"] for figure in report["figures"]}  # type: ignore[attr-defined]
    missing = [key for key in REQUIRED if key not in keys]
    assert not missing, missing
    w2 = "sqlite.w2.ratio" in keys
    notes = " ".join(report["notes"])  # type: ignore[arg-type]
    assert w2 or "W2 not run" in notes


def test_the_report_says_what_it_ran_on(report: dict[str, object]) -> None:
    machine = report["machine"]
    assert isinstance(machine, dict)
    assert machine["cores"] and machine["python"]
    for package in ("fastapi", "uvicorn", "sqlalchemy"):
        assert machine["packages"][package]
    assert report["plan"]["repeats"] == 1  # type: ignore[index]
    assert "W1" in report["configuration"]["sqlite"]  # type: ignore[index]
