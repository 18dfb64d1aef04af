"""The client's calls a governance domain makes too: read a run, ack, read the owed feed.

RokClient (service.worker.client) is built on this class; it is apart so each
module stays about one thing. An ack is not exactly-once by itself (a second
one is drift), so each carries an Idempotency-Key and, after a lost answer, is
looked for on the run before it is sent again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.worker.retries import RetryingSender
from service.worker.wire import AckBody, Run, json_object


class EvidenceCalls:
    _sender: RetryingSender
    _timeout_s: float

    async def get_run(self, run_id: str) -> Run:
        return json_object(await self._sender.send("GET", f"/runs/{run_id}"))

    # -- acks -----------------------------------------------------------------------

    async def ack(
        self,
        run_id: str,
        domain: str,
        action: str,
        result_id: str | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = {
            "domain": domain,
            "action": action,
            "result_id": result_id,
            "error": error,
            "details": details,
        }

        async def already_recorded() -> dict[str, Any] | None:
            run = await self.get_run(run_id)
            for recorded in run["acks"]:
                if (recorded["domain"], recorded["action"]) == (domain, action) and recorded[
                    "result_id"
                ] == result_id:
                    return dict(recorded)
            return None

        response = await self._sender.send(
            "POST", f"/runs/{run_id}/acks", json=body, confirm=already_recorded
        )
        if isinstance(response, dict):
            return response
        return json_object(response)

    async def ack_batch(self, run_id: str, acks: Sequence[AckBody]) -> list[dict[str, Any]]:
        """Several acks in one transaction (all recorded, in order, or none)."""
        wanted = [(a["domain"], a["action"], a.get("result_id")) for a in acks]

        async def already_recorded() -> list[dict[str, Any]] | None:
            run = await self.get_run(run_id)
            recorded = [dict(a) for a in run["acks"]]
            keys = [(a["domain"], a["action"], a["result_id"]) for a in recorded]
            if not all(key in keys for key in wanted):
                return None
            return [recorded[keys.index(key)] for key in wanted]

        response = await self._sender.send(
            "POST",
            f"/runs/{run_id}/acks/batch",
            json={"acks": list(acks)},
            confirm=already_recorded,
        )
        if isinstance(response, list):
            return response
        return list(json_object(response)["acks"])

    # -- the owed feed ----------------------------------------------------------------

    async def owed(
        self, domain: str, limit: int = 50, wait_ms: int = 0, phase: str | None = None
    ) -> list[dict[str, Any]]:
        """GET /domains/{domain}/owed: runs that still owe `domain` acks, oldest first,
        long-polling up to wait_ms while none does."""
        params: dict[str, Any] = {"limit": limit, "wait_ms": wait_ms}
        if phase is not None:
            params["phase"] = phase
        response = await self._sender.send(
            "GET",
            f"/domains/{domain}/owed",
            params=params,
            timeout_s=wait_ms / 1000 + self._timeout_s,
        )
        return list(json_object(response)["items"])
