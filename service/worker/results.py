"""What the pool reports for each run it handled (callbacks, run_until, the demo)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.worker.outcome import OutcomeKind
from service.worker.wire import TERMINAL, Run

ERROR_CHARS = 90


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class RunResult:
    run_id: str
    handler: str
    phase: str
    """The phase as last seen: terminal unless the run was lost to someone else."""
    attempt: int
    error: str | None
    outcome: OutcomeKind | None
    """What execution came to in this worker (None when it did not execute here)."""
    lost: bool
    """The run was taken from this worker (lease fenced, or failed from outside)."""
    run: Run | None
    """The run's JSON as last seen (None if it could not be read)."""

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    @property
    def reconciliation(self) -> dict[str, Any]:
        return dict((self.run or {}).get("reconciliation") or {})

    @property
    def incidents(self) -> list[dict[str, Any]]:
        return list((self.run or {}).get("incidents") or [])

    def summary(self, label: str | None = None) -> str:
        """One line: phase, handler, reconciliation status, what is missing or failed, the error."""
        rec = self.reconciliation
        parts = [f"{self.phase:<9}", f"{self.handler:<18}"]
        if label:
            parts.append(f"{label:<34}")
        parts.append(f"reconciliation {rec.get('status', '?')}")
        for key in ("missing", "failed", "drift"):
            pairs = rec.get(key) or []
            if pairs:
                parts.append(f"{key}=" + ",".join(f"{d}/{a}" for d, a in pairs))
        if rec.get("stale"):
            parts.append("stale")
        if self.incidents:
            parts.append("incident=" + ",".join(str(i.get("kind")) for i in self.incidents))
        if self.lost:
            parts.append("(taken from this worker)")
        if self.error:
            parts.append("error: " + _clip(self.error.splitlines()[0], ERROR_CHARS))
        return "  ".join(parts)

    @classmethod
    def of(cls, run: Run, outcome: OutcomeKind | None, lost: bool = False) -> RunResult:
        return cls(
            run_id=str(run["id"]),
            handler=str(run.get("handler") or ""),
            phase=str(run["phase"]),
            attempt=int(run.get("attempt", 1)),
            error=run.get("error"),
            outcome=outcome,
            lost=lost,
            run=run,
        )
