"""One run's ack outbox: what its domains send through POST /runs/{id}/acks.

`send` queues an ack and returns at once; a task delivers it with the
client's retries. Delivery is decoupled from the domain's hook on purpose:
the hook's timeout bounds the domain's own work (a hung domain leaves its ack
missing), while an ack that is ready waits out a restarting service like any
other call, instead of being dropped as if its domain had hung. The driver
flushes the outbox before the governance check and the denial.

It only sends what the run still owes: a pair the run's contract does not
expect (a custom contract, RAC_ENABLED=false) or one already acked (by an
earlier attempt, or a second call) would only be recorded as drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from service.worker.client import RokClient, Run

log = logging.getLogger("rok.worker.acks")

Pair = tuple[str, str]


class AckChannel:
    def __init__(self, client: RokClient, run: Run) -> None:
        self.run_id = str(run["id"])
        self._client = client
        self._expected: set[Pair] = {(e["domain"], e["action"]) for e in run["expectations"]}
        timely = [a for a in run["acks"] if not a.get("late")]
        self._previous: dict[Pair, dict[str, Any]] = {(a["domain"], a["action"]): a for a in timely}
        self._queued: set[Pair] = set(self._previous)
        self._deliveries: set[asyncio.Task[None]] = set()
        self.delivered: list[Pair] = []

    def owes(self, domain: str, action: str) -> bool:
        return (domain, action) in self._expected and (domain, action) not in self._queued

    def previous(self, domain: str, action: str) -> dict[str, Any] | None:
        """The ack an earlier attempt sent for this pair (a resumed run), if any."""
        return self._previous.get((domain, action))

    async def send(
        self,
        domain: str,
        action: str,
        result_id: str | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> bool:
        """Queue an ack of (domain, action) unless the run does not owe it; True if queued."""
        pair = (domain, action)
        if not self.owes(domain, action):
            log.debug("run %s does not owe %s/%s; not acked", self.run_id, domain, action)
            return False
        self._queued.add(pair)
        task = asyncio.create_task(
            self._deliver(pair, result_id, error, details),
            name=f"rok-ack-{domain}-{action}-{self.run_id[:8]}",
        )
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)
        return True

    async def flush(self) -> None:
        """Wait until every queued ack was delivered (or refused)."""
        while self._deliveries:
            await asyncio.wait(set(self._deliveries))

    async def close(self) -> None:
        """Drop what was not delivered: the run is over, an ack now would be drift."""
        tasks = list(self._deliveries)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver(
        self,
        pair: Pair,
        result_id: str | None,
        error: str | None,
        details: dict[str, Any] | None,
    ) -> None:
        domain, action = pair
        try:
            await self._client.ack(self.run_id, domain, action, result_id, error, details)
        except Exception as exc:  # refused (a bug, an unknown run): retrying would not help
            log.error("ack %s/%s for run %s refused: %s", domain, action, self.run_id, exc)
            return
        self.delivered.append(pair)
