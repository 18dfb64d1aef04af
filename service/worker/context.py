"""The handler context: what a handler sees of its run, and how it is stopped.

Handlers run in a thread (sync) or a task (async), so everything here is
thread-safe: `step` and `charge` record under a lock, and `stop` (called by
the pool from the event loop, or by `charge` from the handler's thread)
wakes the pool's watchdog through listeners instead of touching the loop.

Budgets are enforced here, synchronously, on the handler's own calls: the
cost or step that crosses a policy limit raises `PolicyViolation` at once,
and stops the run even when the handler swallows the exception.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.worker.outcome import PolicyViolation, RunCancelled


@dataclass(frozen=True)
class Limits:
    """Budgets a run must stay within (None: no limit); set by the policies domain."""

    max_cost: float | None = None
    max_steps: int | None = None
    max_duration_ms: int | None = None


@dataclass(frozen=True)
class Step:
    """One `ctx.step(name, **attributes)`: a named point in the run (a span starts here)."""

    name: str
    at: datetime
    attributes: dict[str, Any] = field(default_factory=dict)


StopListener = Callable[[RunCancelled], None]
StepListener = Callable[[Step], None]


class RunContext:
    """Passed to every handler as `ctx`; the domains read the same object."""

    def __init__(self, run: dict[str, Any], worker_id: str, limits: Limits | None = None) -> None:
        self.run = run
        """The run as claimed (its JSON): expectations, acks, history."""
        self.run_id: str = str(run["id"])
        self.handler: str = str(run.get("handler") or "")
        self.input: Any = run.get("input")
        self.attempt: int = int(run.get("attempt", 1))
        self.traceparent: str | None = run.get("traceparent")
        """The trace the run belongs to (W3C traceparent), if its creator sent or made one."""
        self.worker_id = worker_id
        self.limits = limits or Limits()
        self.started_at: datetime | None = None
        self.ended_at: datetime | None = None
        self._lock = threading.Lock()
        self._steps: list[Step] = []
        self._cost = 0.0
        self._stopped: RunCancelled | None = None
        self._stop_listeners: list[StopListener] = []
        self._step_listeners: list[StepListener] = []

    # -- what a handler calls ------------------------------------------------------

    def step(self, name: str, **attributes: Any) -> None:
        """Record a step (the traces domain makes it a span); raises once the run is stopped."""
        self.check()
        step = Step(name, datetime.now(UTC), attributes)
        with self._lock:
            self._steps.append(step)
            count = len(self._steps)
            listeners = list(self._step_listeners)
        for listener in listeners:
            listener(step)
        limit = self.limits.max_steps
        if limit is not None and count > limit:
            self._violate(f"{count} steps exceed max_steps {limit} of handler '{self.handler}'")

    def charge(self, cost: float) -> None:
        """Add to the run's cost (tokens, money); crossing max_cost stops the run."""
        self.check()
        with self._lock:
            self._cost += cost
            total = self._cost
        limit = self.limits.max_cost
        if limit is not None and total > limit:
            self._violate(f"cost {total:g} exceeds max_cost {limit:g} of handler '{self.handler}'")

    def check(self) -> None:
        """Raise the reason the run was stopped (a `RunCancelled`), if it was."""
        stopped = self._stopped
        if stopped is not None:
            raise stopped

    # -- what the pool and the domains read ---------------------------------------------

    @property
    def cost(self) -> float:
        with self._lock:
            return self._cost

    @property
    def steps(self) -> list[Step]:
        with self._lock:
            return list(self._steps)

    @property
    def stopped(self) -> RunCancelled | None:
        return self._stopped

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds() * 1000

    def stop(self, reason: RunCancelled) -> bool:
        """Stop the run for `reason`; the first reason wins. True if this call stopped it."""
        with self._lock:
            if self._stopped is not None:
                return False
            self._stopped = reason
            listeners = list(self._stop_listeners)
        for listener in listeners:
            listener(reason)
        return True

    def on_stop(self, listener: StopListener) -> None:
        with self._lock:
            already = self._stopped
            self._stop_listeners.append(listener)
        if already is not None:
            listener(already)

    def on_step(self, listener: StepListener) -> None:
        with self._lock:
            self._step_listeners.append(listener)

    def _violate(self, why: str) -> None:
        violation = PolicyViolation(why)
        self.stop(violation)
        self.check()  # raises the winning reason (this violation, or an earlier stop)
