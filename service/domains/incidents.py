"""The incidents domain: every run is looked at; the ones that went wrong get an incident.

A failed, denied, timed-out or policy-violating run opens an incident: acked
as incidents/create_incident with `result_id` = the incident id and the
record in `details` (`kind`, `summary`, ...), which the service shows under
the run's `incidents`. A clean run is acked with `result_id: null`: "looked,
nothing to open". The domain also keeps the records it opened (the last
`keep` in memory, and every one as a JSON line in `journal` if given).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from pathlib import Path
from types import MappingProxyType
from typing import Any

from service.domains.evidence import first_line, new_id, now_iso, provenance
from service.worker import AckChannel, Decision, Domain, Outcome, OutcomeKind, RunContext

DOMAIN = "incidents"
ACTION = "create_incident"

SEVERITY = {
    OutcomeKind.HANDLER_ERROR: "high",
    OutcomeKind.TIMEOUT: "high",
    OutcomeKind.POLICY_VIOLATION: "high",
    OutcomeKind.DENIED: "low",
    OutcomeKind.SHUTDOWN: "medium",
    OutcomeKind.CANCEL_REQUESTED: "low",
}


class IncidentsDomain(Domain):
    name = DOMAIN
    owes = MappingProxyType(
        {
            "on_denied": ((DOMAIN, ACTION),),
            "on_execution_end": ((DOMAIN, ACTION),),
        }
    )

    def __init__(self, journal: str | os.PathLike[str] | None = None, keep: int = 1000) -> None:
        self.opened: deque[dict[str, Any]] = deque(maxlen=keep)
        self._journal = Path(journal) if journal is not None else None

    async def on_denied(self, ctx: RunContext, decision: Decision, acks: AckChannel) -> None:
        why = f"{decision.decision}" + (f": {decision.reason}" if decision.reason else "")
        await self._open(ctx, OutcomeKind.DENIED, f"run of '{ctx.handler}' denied ({why})", acks)

    async def on_attempt_failed(self, ctx: RunContext, outcome: Outcome) -> None:
        """A failed attempt the run retries gets its incident too, kept here (and in the
        journal): the run's one create_incident ack comes when the run ends, and lists
        the failed attempts its history records."""
        await self._record(ctx, outcome.kind, first_line(outcome.error), outcome.error)

    async def on_execution_end(self, ctx: RunContext, outcome: Outcome, acks: AckChannel) -> None:
        earlier = failed_attempts(ctx)
        if outcome.success:
            details = {**provenance(ctx), **({"failed_attempts": earlier} if earlier else {})}
            await acks.send(DOMAIN, ACTION, result_id=None, details=details)
            return
        await self._open(ctx, outcome.kind, first_line(outcome.error), acks, outcome.error)

    async def _open(
        self,
        ctx: RunContext,
        kind: OutcomeKind,
        summary: str,
        acks: AckChannel,
        error: str | None = None,
    ) -> None:
        incident_id, record = await self._record(ctx, kind, summary, error)
        await acks.send(DOMAIN, ACTION, result_id=incident_id, details=record)

    async def _record(
        self, ctx: RunContext, kind: OutcomeKind, summary: str, error: str | None
    ) -> tuple[str, dict[str, Any]]:
        incident_id = new_id("inc")
        record = {
            "kind": kind.value,
            "summary": summary,
            "severity": SEVERITY.get(kind, "medium"),
            "handler": ctx.handler,
            **provenance(ctx),
            "opened_at": now_iso(),
            "error": error,
        }
        earlier = failed_attempts(ctx)
        if earlier:
            record["failed_attempts"] = earlier
        self.opened.append({"incident_id": incident_id, "run_id": ctx.run_id, **record})
        if self._journal is not None:
            line = json.dumps({"incident_id": incident_id, "run_id": ctx.run_id, **record})
            await asyncio.to_thread(_append, self._journal, line)
        return incident_id, record


def failed_attempts(ctx: RunContext) -> list[dict[str, Any]]:
    """The earlier attempts of the run that failed and were retried, from its history."""
    return [
        {"attempt": entry["attempt"] - 1, "error": entry["details"]["error"], "at": entry["at"]}
        for entry in ctx.run.get("history") or []
        if (entry.get("details") or {}).get("attempt_started") and entry["details"].get("error")
    ]


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as journal:
        journal.write(line + "\n")
