"""Keeping a run's lease alive, and noticing when it is gone.

A heartbeat every lease_ms/3 leaves two chances to renew before the lease
expires. A 409 means the run is no longer ours: failed from outside (an
operator's /fail, the sweeper) or fenced because the lease expired and the
run went to someone else. The keeper reads the run once to tell which, and
stops the handler's context with that reason.
"""

from __future__ import annotations

import asyncio
import logging

from service.worker.api_errors import ApiError, Conflict, RunMissing
from service.worker.client import RokClient
from service.worker.context import RunContext
from service.worker.outcome import CancelRequested, LeaseRevoked, RunCancelled

log = logging.getLogger("rok.worker.lease")


class LeaseKeeper:
    def __init__(
        self,
        client: RokClient,
        ctx: RunContext,
        token: str,
        lease_ms: int,
    ) -> None:
        self._client = client
        self._ctx = ctx
        self.token = token
        self._lease_ms = lease_ms
        self.lost = False

    @property
    def interval_s(self) -> float:
        return self._lease_ms / 3000

    async def run(self) -> None:
        """Heartbeat until cancelled or the lease is lost."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                answer = await self._client.heartbeat(
                    self._ctx.run_id, self._ctx.worker_id, self.token, self._lease_ms
                )
                if answer.get("cancel_requested"):
                    # keep heartbeating: the run is still ours, to fail through the normal path
                    self._ctx.stop(CancelRequested(answer.get("cancel_reason") or "cancelled"))
            except (Conflict, RunMissing) as exc:
                await self._lost(exc.detail)
                return
            except ApiError as exc:  # refused for another reason: a bug; keep the run going
                log.error("heartbeat of run %s refused: %s", self._ctx.run_id, exc)

    async def _lost(self, detail: str) -> None:
        self.lost = True
        reason = await self.why_lost(detail)
        log.warning("run %s is no longer ours: %s", self._ctx.run_id, reason.error)
        self._ctx.stop(reason)

    async def why_lost(self, detail: str) -> RunCancelled:
        """Failed from outside (RunCancelled) or fenced (LeaseRevoked)?"""
        try:
            run = await asyncio.wait_for(self._client.get_run(self._ctx.run_id), self.interval_s)
        except Exception:
            return LeaseRevoked(detail)
        if run["phase"] == "FAILED":
            return RunCancelled(f"the run was failed from outside: {run.get('error')}")
        if run["phase"] == "COMPLETED":
            return LeaseRevoked("the run was completed by someone else")
        return LeaseRevoked(detail)
