"""Issue 13's targets, each found among the figures of one run and judged met or not.

Every target is a figure's own Target (set where the figure is measured,
judged on its median); this module only says which figures answer which
numbered target of the issue, so bench.md can open with one line per target
and backend. A target whose workload did not run is "not measured"; one the
issue asks only to report (7, the peer) is "reported".
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from service.bench.figures import Figure, Figures

BOTH = ("sqlite", "postgres")


@dataclass(frozen=True)
class IssueTarget:
    number: str
    text: str
    workload: str
    patterns: tuple[str, ...]  # figure keys without the backend; * matches a level
    backends: tuple[str, ...] = BOTH
    judged: bool = True  # False: the issue asks for the figure, not for a bound


ISSUE_13 = (
    IssueTarget(
        "1",
        "server CPU per lifecycle request ≤ 1.3 x the one-insert endpoint's (8 clients)",
        "W1",
        ("w1.c8.cpu_ratio",),
    ),
    IssueTarget(
        "2",
        "W1 requests/s ≥ 0.75 x durable insert+commit req/s (8 clients)",
        "W1",
        ("w1.c8.ratio_writes",),
    ),
    IssueTarget(
        "3",
        "W2 governed runs/s ≥ 0.6 (SQLite) / 0.5 (PostgreSQL) x ROK_ENABLED=false",
        "W2",
        ("w2.ratio",),
    ),
    IssueTarget(
        "3",
        "W2 governed runs/s ≥ 0.2 x durable insert+commit req/s (8 clients)",
        "W2",
        ("w2.ratio_writes",),
    ),
    IssueTarget(
        "4",
        "W2 submit→start p50 ≤ 10 ms (governed, idle pool: one run at a time)",
        "W2",
        ("w2.governed.idle.submit_to_start_p50_ms",),
    ),
    IssueTarget("5", "W4 wake-up p99 < 50 ms", "W4", ("w4.wake_p99_ms",)),
    IssueTarget(
        "5",
        "W3 claim p50 and lifecycle p50 at the largest level ≤ 1.2 x empty",
        "W3",
        ("w3.*.claim_p50_ms_ratio", "w3.*.lifecycle_p50_ms_ratio"),
    ),
    IssueTarget(
        "6",
        "scale-out: 2 processes ÷ 1 requests/s > 1 (8 and 32 clients)",
        "W7",
        ("w7.c*.workers_ratio", "w7.c*.replicas_ratio"),
        backends=("postgres",),
    ),
    IssueTarget(
        "7",
        "peer: governed rok runs/s ÷ Celery runs/s (--peers)",
        "W2",
        ("w2.ratio_celery",),
        judged=False,
    ),
)


@dataclass(frozen=True)
class Row:
    target: IssueTarget
    backend: str
    figures: tuple[Figure, ...]

    @property
    def verdict(self) -> str:
        if not self.figures:
            return "not measured"
        if not self.target.judged:
            return "reported"
        return "met" if all(f.met for f in self.figures) else "not met"

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.target.number,
            "target": self.target.text,
            "backend": self.backend,
            "keys": [f.key for f in self.figures],
            "medians": [f.to_json()["median"] for f in self.figures],
            "verdict": self.verdict,
        }


def _answers(target: IssueTarget, figure: Figure, backend: str) -> bool:
    if figure.backend != backend:
        return False
    key = figure.key.removeprefix(f"{backend}.")
    if not any(fnmatch.fnmatchcase(key, pattern) for pattern in target.patterns):
        return False
    # a level's ratio without a Target is an intermediate level (W3), not the judged one
    return figure.target is not None or not target.judged


def rows(figures: Figures, backends: tuple[str, ...]) -> list[Row]:
    """One row per issue-13 target and backend of this run that the target concerns;
    a target on none of this run's backends (W7 in a SQLite run) gets one row, not measured."""
    found = []
    for target in ISSUE_13:
        mine = [backend for backend in backends if backend in target.backends]
        found += [
            Row(target, backend, tuple(f for f in figures if _answers(target, f, backend)))
            for backend in mine
        ]
        if not mine:
            found.append(Row(target, " / ".join(target.backends), ()))
    return found
