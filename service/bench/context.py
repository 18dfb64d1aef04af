"""What every workload gets: the backend, the plan, where figures go, a progress line."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from service.bench.databases import scratch_database
from service.bench.figures import Figures, Target
from service.bench.plan import Plan


@dataclass
class Context:
    backend: str
    plan: Plan
    figures: Figures
    postgres_url: str
    configuration: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    redis_url: str | None = None
    """--peers: the Redis of the Celery peer W2 runs beside rok (None: no peer)."""
    failed: bool = False
    started: float = field(default_factory=time.monotonic)

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[bench {elapsed:7.1f}s {self.backend}] {message}", file=sys.stderr, flush=True)

    def scratch(self, name: str) -> AbstractContextManager[str]:
        return scratch_database(self.backend, name, self.postgres_url)

    def add(
        self,
        key: str,
        value: float,
        *,
        workload: str,
        label: str,
        unit: str,
        target: Target | None = None,
        table: str = "main",
    ) -> None:
        self.figures.add(
            f"{self.backend}.{key}",
            value,
            workload=workload,
            backend=self.backend,
            label=label,
            unit=unit,
            target=target,
            table=table,
        )

    def last(self, key: str) -> float | None:
        """The latest sample of a figure of this backend (this repeat's value)."""
        figure = self.figures.get(f"{self.backend}.{key}")
        return figure.samples[-1] if figure and figure.samples else None

    def median(self, key: str) -> float | None:
        """The median so far of a figure of this backend (to compare later levels with)."""
        figure = self.figures.get(f"{self.backend}.{key}")
        return figure.median if figure and figure.samples else None

    def record(self, workload: str, settings: dict[str, Any]) -> None:
        """Keep the exact configuration a workload ran with, for the report."""
        self.configuration.setdefault(self.backend, {})[workload] = settings

    def repeats(self) -> Iterator[int]:
        yield from range(1, self.plan.repeats + 1)
