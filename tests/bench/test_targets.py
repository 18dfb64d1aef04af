"""The Targets section: which figures answer each issue-13 target, and its verdict."""

from __future__ import annotations

import math

from service.bench import report, targets
from service.bench.figures import Figures, Target
from service.bench.scale import SCALE_TARGET
from service.bench.throughput import CPU_TARGET, WRITES_TARGET


def add(figures: Figures, key: str, value: float, target: Target | None = None) -> None:
    backend, rest = key.split(".", 1)
    workload = rest.split(".", 1)[0].upper()
    figures.add(key, value, workload=workload, backend=backend, label=key, unit="", target=target)


def verdicts(figures: Figures, backends: tuple[str, ...]) -> dict[tuple[str, str], str]:
    return {(row.target.text, row.backend): row.verdict for row in targets.rows(figures, backends)}


def text_of(pattern: str) -> str:
    return next(t.text for t in targets.ISSUE_13 if pattern in t.patterns)


def test_a_target_is_met_only_when_every_figure_answering_it_is() -> None:
    figures = Figures()
    add(figures, "sqlite.w1.c8.ratio_writes", 0.8, WRITES_TARGET)
    add(figures, "sqlite.w1.c8.cpu_ratio", 1.9, CPU_TARGET)
    add(figures, "sqlite.w3.10000.claim_p50_ms_ratio", 1.1, SCALE_TARGET)
    add(figures, "sqlite.w3.10000.lifecycle_p50_ms_ratio", 1.3, SCALE_TARGET)
    found = verdicts(figures, ("sqlite",))
    assert found[(text_of("w1.c8.ratio_writes"), "sqlite")] == "met"
    assert found[(text_of("w1.c8.cpu_ratio"), "sqlite")] == "not met"
    assert found[(text_of("w3.*.claim_p50_ms_ratio"), "sqlite")] == "not met"


def test_an_intermediate_level_without_a_target_does_not_answer() -> None:
    figures = Figures()
    add(figures, "sqlite.w3.100000.claim_p50_ms_ratio", 5.0)  # not the largest level
    add(figures, "sqlite.w3.1000000.claim_p50_ms_ratio", 1.1, SCALE_TARGET)
    add(figures, "sqlite.w3.1000000.lifecycle_p50_ms_ratio", 1.0, SCALE_TARGET)
    (row,) = [r for r in targets.rows(figures, ("sqlite",)) if r.target.workload == "W3"]
    assert [f.key for f in row.figures] == [
        "sqlite.w3.1000000.claim_p50_ms_ratio",
        "sqlite.w3.1000000.lifecycle_p50_ms_ratio",
    ]
    assert row.verdict == "met"


def test_what_did_not_run_is_not_measured_and_the_peer_is_reported() -> None:
    figures = Figures()
    add(figures, "sqlite.w2.ratio_celery", 0.4)
    found = verdicts(figures, ("sqlite",))
    assert found[(text_of("w2.ratio_celery"), "sqlite")] == "reported"
    assert found[(text_of("w4.wake_p99_ms"), "sqlite")] == "not measured"
    # W7 is PostgreSQL's only: a SQLite run still lists it, not measured
    assert found[(text_of("w7.c*.workers_ratio"), "postgres")] == "not measured"


def test_a_figure_that_could_not_be_measured_is_not_met() -> None:
    figures = Figures()
    add(figures, "postgres.w1.c8.ratio_writes", math.nan, WRITES_TARGET)
    found = verdicts(figures, ("postgres",))
    assert found[(text_of("w1.c8.ratio_writes"), "postgres")] == "not met"


def test_the_section_opens_the_report_with_every_target() -> None:
    lines = report.targets_section(Figures(), ("sqlite", "postgres"))
    assert lines[0] == "## Targets (issue 13)"
    numbers = {line.split("|")[1].strip() for line in lines[4:] if line}
    assert numbers == {"1", "2", "3", "4", "5", "6", "7"}
