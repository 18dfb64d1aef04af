"""A measured figure: one value per repeat, reported as median, min and max.

Figures are keyed by a dotted name (`sqlite.w1.c8.lifecycles_per_s`); the
same key measured again in the next repeat adds a sample. A figure may carry
the project's target for it (issue 4), judged on the median.
"""

from __future__ import annotations

import math
import operator
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Target:
    """`value OP bound`, with the words the issue used for it."""

    op: str  # one of _OPERATORS
    bound: float
    text: str

    def met(self, value: float) -> bool:
        return not math.isnan(value) and _OPERATORS[self.op](value, self.bound)


@dataclass
class Figure:
    key: str
    workload: str
    backend: str
    label: str
    unit: str
    samples: list[float] = field(default_factory=list)
    target: Target | None = None
    table: str = "main"  # "main", or "endpoints" for per-endpoint latencies

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def minimum(self) -> float:
        return min(self.samples) if self.samples else math.nan

    @property
    def maximum(self) -> float:
        return max(self.samples) if self.samples else math.nan

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.median)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "workload": self.workload,
            "backend": self.backend,
            "label": self.label,
            "unit": self.unit,
            "samples": [_finite(s) for s in self.samples],
            "median": _finite(self.median),
            "min": _finite(self.minimum),
            "max": _finite(self.maximum),
            "target": None
            if self.target is None
            else {"op": self.target.op, "bound": self.target.bound, "text": self.target.text},
            "met": self.met,
            "table": self.table,
        }


def _finite(value: float) -> float | None:
    """JSON has no NaN: a figure that could not be measured is null."""
    return None if math.isnan(value) else value


class Figures:
    """All figures of one bench run, in the order they were first measured."""

    def __init__(self) -> None:
        self._by_key: dict[str, Figure] = {}

    def add(
        self,
        key: str,
        value: float,
        *,
        workload: str,
        backend: str,
        label: str,
        unit: str,
        target: Target | None = None,
        table: str = "main",
    ) -> None:
        figure = self._by_key.get(key)
        if figure is None:
            figure = Figure(key, workload, backend, label, unit, target=target, table=table)
            self._by_key[key] = figure
        figure.samples.append(float(value))

    def get(self, key: str) -> Figure | None:
        return self._by_key.get(key)

    def __iter__(self) -> Iterator[Figure]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan
