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

from service.worker.api_errors import ApiError
from service.worker.client import RokClient
from service.worker.wire import AckBody, Run

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
        self._pending: list[AckBody] = []
        self._sender: asyncio.Task[None] | None = None
        self.delivered: list[Pair] = []
        self.requests = 0

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
        self._pending.append(
            {
                "domain": domain,
                "action": action,
                "result_id": result_id,
                "error": error,
                "details": details,
            }
        )
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(
                self._send_pending(), name=f"rok-acks-{self.run_id[:8]}"
            )
        return True

    async def flush(self) -> None:
        """Wait until every queued ack was delivered (or refused)."""
        while self._sender is not None and not self._sender.done():
            await asyncio.wait({self._sender})

    async def close(self) -> None:
        """Drop what was not delivered: the run is over, an ack now would be drift."""
        self._pending.clear()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def _send_pending(self) -> None:
        # Nagle-like: the first ack leaves at once; those queued while it is
        # in flight leave together in the next request (one transaction). No
        # ack waits for a timer, and a run's end-of-execution acks (policy,
        # trace, incident) cost two requests instead of three.
        while self._pending:
            batch, self._pending = self._pending, []
            await self._deliver(batch)

    async def _deliver(self, batch: list[AckBody]) -> None:
        self.requests += 1
        try:
            if len(batch) == 1:
                one = batch[0]
                await self._client.ack(
                    self.run_id,
                    one["domain"],
                    one["action"],
                    one["result_id"],
                    one["error"],
                    one["details"],
                )
            else:
                await self._client.ack_batch(self.run_id, batch)
        except ApiError as exc:
            if len(batch) > 1:
                # A batch is refused whole; one bad ack must not take the rest down.
                log.warning(
                    "batch of %d acks for run %s refused (%s); one by one",
                    len(batch),
                    self.run_id,
                    exc,
                )
                for one in batch:
                    await self._deliver([one])
                return
            log.error(
                "ack %s/%s for run %s refused: %s",
                batch[0]["domain"],
                batch[0]["action"],
                self.run_id,
                exc,
            )
            return
        except Exception as exc:  # the service stayed unreachable past the retry timeout
            log.error("%d ack(s) for run %s not delivered: %s", len(batch), self.run_id, exc)
            return
        self.delivered.extend((a["domain"], a["action"]) for a in batch)
