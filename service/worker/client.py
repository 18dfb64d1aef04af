"""A small typed async client for the rok REST API: one method per endpoint.

Every call goes through `service.worker.retries`, which retries what failed
(each POST with one Idempotency-Key on all its tries, the API key, if any,
on every request) and, after a send that may have landed, reads the run back
instead of applying it twice; each method here supplies that read back: how its own
effect is recognised on the run (the phase a move lands in, an ack recorded).
What the client raises is in `service.worker.api_errors`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from types import TracebackType
from typing import Any

import httpx

from service.telemetry import OFF, Tracing
from service.worker.evidence_calls import EvidenceCalls
from service.worker.retries import Backoff, RetryingSender
from service.worker.wire import (
    PREFER,
    RETURN_MINIMAL,
    TERMINAL,
    Claim,
    Run,
    json_object,
    lease_header,
)


class RokClient(EvidenceCalls):
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        retry_timeout_s: float | None = None,
        backoff: Backoff | None = None,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
        api_key: str | None = None,
        tracing: Tracing = OFF,
    ) -> None:
        """`api_key`: sent as `Authorization: Bearer <key>` (ROK_AUTH=required);
        `tracing`: a client span per request (its traceparent continues the run's trace)."""
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._sender = RetryingSender(
            self.url,
            timeout_s=timeout_s,
            retry_timeout_s=retry_timeout_s,
            backoff=backoff or Backoff(),
            max_connections=max_connections,
            transport=transport,
            api_key=api_key,
            tracing=tracing,
        )

    async def __aenter__(self) -> RokClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._sender.aclose()

    # -- runs -------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return json_object(await self._sender.send("GET", "/healthz"))

    async def create_run(self, **body: Any) -> Run:
        """POST /runs. A lost response is replayed, not created twice (the call's
        Idempotency-Key); an idempotency_key in the body also holds across calls."""
        return json_object(await self._sender.send("POST", "/runs", json=body))

    async def list_runs(self, **query: Any) -> dict[str, Any]:
        params = {k: v for k, v in query.items() if v is not None}
        return json_object(await self._sender.send("GET", "/runs", params=params))

    # -- leases -----------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        lease_ms: int,
        handlers: Collection[str] | None = None,
        wait_ms: int = 0,
    ) -> Claim | None:
        """Lease the next waiting run, long-polling up to wait_ms; None when none came.

        Every try of this claim carries one claim_id: when an answer is lost
        and the claim is sent again, the service returns the lease the first
        try took, so no run is left leased to a worker that never heard of it.
        """
        body: dict[str, Any] = {
            "worker_id": worker_id,
            "lease_ms": lease_ms,
            "wait_ms": wait_ms,
            "claim_id": uuid.uuid4().hex,
        }
        if handlers is not None:
            body["handlers"] = sorted(handlers)
        response = await self._sender.send(
            "POST",
            "/runs/claim",
            json=body,
            timeout_s=wait_ms / 1000 + self._timeout_s,
            replay=False,  # the claim_id makes a resent claim return the first lease
        )
        if response.status_code == 204:
            return None
        data = json_object(response)
        lease = data["lease"]
        return Claim(run=data["run"], token=lease["token"], expires_at=lease["expires_at"])

    async def heartbeat(
        self, run_id: str, worker_id: str, token: str, lease_ms: int
    ) -> dict[str, Any]:
        """Extend the lease by lease_ms; Conflict once it is no longer ours."""
        body = {"worker_id": worker_id, "lease_ms": lease_ms}
        response = await self._sender.send(
            "POST",
            f"/runs/{run_id}/heartbeat",
            json=body,
            headers=lease_header(token),
            replay=False,
        )
        return json_object(response)

    # -- lifecycle moves (fenced by the lease token) -------------------------------

    async def authorize(
        self,
        run_id: str,
        token: str | None,
        decision: str,
        reason: str | None = None,
        begin_execution: bool = False,
        minimal: bool = False,
    ) -> Run:
        """Authorize; with begin_execution a granted run goes on to EXECUTING at once.

        `minimal` (on every move): answer the run's state alone (RunStateOut, with
        `Prefer: return=minimal`), not the whole run with its history and acks."""
        body = {"decision": decision, "reason": reason, "begin_execution": begin_execution}
        if decision == "APPROVAL_REQUIRED":
            lands_in = {"CREATED"}  # held for a person, lease dropped
        elif decision != "GRANTED":
            lands_in = {"FAILED"}
        else:
            lands_in = {"EXECUTING"} if begin_execution else {"AUTHORIZED"}
        return await self._move(run_id, "authorize", token, body, lands_in, minimal)

    async def begin_execution(self, run_id: str, token: str | None, minimal: bool = False) -> Run:
        return await self._move(run_id, "begin-execution", token, None, {"EXECUTING"}, minimal)

    async def execution_complete(
        self,
        run_id: str,
        token: str | None,
        success: bool,
        error: str | None = None,
        result: Any = None,
        minimal: bool = False,
        attempt: int | None = None,
    ) -> Run:
        """Report the outcome; a failure under a retry policy with attempts left lands back
        in EXECUTING as the next attempt (no lease: claimable after its backoff).

        `attempt`: the attempt this outcome ends. After a lost answer, a run read
        back in EXECUTING shows the failure landed only if it is past that attempt
        (else the run is where it was before the call, and the call is sent again).
        """
        body: dict[str, Any] = {"success": success, "error": error}
        if result is not None:
            body["result"] = result

        def landed(run: Run) -> bool:
            if run["phase"] == "GOVERNANCE_CHECK":
                return True
            moved_on = attempt is None or int(run.get("attempt", 0)) > attempt
            return not success and run["phase"] == "EXECUTING" and moved_on

        return await self._move(run_id, "execution-complete", token, body, landed, minimal)

    async def complete_and_check(
        self,
        run_id: str,
        token: str | None,
        timeout_ms: int | None = None,
        require_all_acks: bool = False,
    ) -> Run:
        """A successful execution, its governance check and finalize, in one request.

        For a worker whose domains acked the run's end before it reports it: the
        check waits server-side for what is still in flight; the answer is the
        run, terminal, with the verdict as its `governance`.
        """
        check = {"timeout_ms": timeout_ms, "require_all_acks": require_all_acks, "finalize": True}
        body = {"success": True, "error": None, "governance_check": check}
        wait_s = (timeout_ms or 300_000) / 1000
        return await self._move(
            run_id, "execution-complete", token, body, TERMINAL, timeout_s=wait_s + self._timeout_s
        )

    async def governance_check(
        self,
        run_id: str,
        token: str | None,
        timeout_ms: int | None = None,
        require_all_acks: bool = False,
        finalize: bool = False,
    ) -> dict[str, Any]:
        """Waits server-side for the acks; with `finalize` the run ends in the same call.

        Resending a plain check only records it again. A check that finalized
        leaves a terminal run, so a resend after a lost answer gets 409: the
        run read back, terminal with its check recorded, is then the answer.
        """
        body = {
            "timeout_ms": timeout_ms,
            "require_all_acks": require_all_acks,
            "finalize": finalize,
        }

        async def already_applied() -> dict[str, Any] | None:
            run = await self.get_run(run_id)
            check = run.get("governance")
            if run["phase"] not in TERMINAL or check is None:
                return None
            return {
                "passed": check["passed"],
                "reconciliation": check["reconciliation"],
                "run": run,
            }

        # the service's own ROK_GOVERNANCE_TIMEOUT_MS is unknown here: allow a long wait
        wait_s = (timeout_ms or 300_000) / 1000
        response = await self._sender.send(
            "POST",
            f"/runs/{run_id}/governance-check",
            json=body,
            headers=lease_header(token),
            timeout_s=wait_s + self._timeout_s,
            confirm=already_applied if finalize else None,
            replay=False,  # a verdict is recorded once; a finalized run refuses a resend
        )
        if isinstance(response, dict):
            return response
        return json_object(response)

    async def finalize(
        self, run_id: str, token: str | None, success: bool, error: str | None = None
    ) -> Run:
        """Finalize once. A resend after a lost response meets a terminal run whose
        lease is gone (409): reading it back shows the run terminal, which is the
        answer, so a finalize is never applied twice nor reported as lost."""
        body = {"success": success, "error": error}
        return await self._move(run_id, "finalize", token, body, TERMINAL)

    async def cancel(self, run_id: str, reason: str, token: str | None = None) -> Run:
        """FAILED now, or (executing) the worker is told to stop; see DESIGN section 11."""
        return await self._move(run_id, "cancel", token, {"reason": reason}, {"FAILED"})

    async def approve(self, run_id: str, by: str | None = None, reason: str | None = None) -> Run:
        response = await self._sender.send(
            "POST", f"/runs/{run_id}/approve", json={"by": by, "reason": reason}
        )
        return json_object(response)

    async def reject(self, run_id: str, by: str | None = None, reason: str | None = None) -> Run:
        return await self._move(run_id, "reject", None, {"by": by, "reason": reason}, {"FAILED"})

    async def release(self, run_id: str, token: str) -> Run:
        """Give a claimed run back: no lease, claimable again, nothing else changes."""
        response = await self._sender.send(
            "POST", f"/runs/{run_id}/release", headers=lease_header(token)
        )
        return json_object(response)

    async def fail(self, run_id: str, error: str, token: str | None = None) -> Run:
        return await self._move(run_id, "fail", token, {"error": error}, {"FAILED"})

    async def ungoverned_outcome(
        self, run_id: str, token: str | None, success: bool, error: str | None = None
    ) -> Run:
        body = {"success": success, "error": error}
        return await self._move(run_id, "ungoverned-outcome", token, body, TERMINAL)

    # -- plumbing ---------------------------------------------------------------------

    async def _move(
        self,
        run_id: str,
        step: str,
        token: str | None,
        body: dict[str, Any] | None,
        lands_in: Collection[str] | Callable[[Run], bool],
        minimal: bool = False,
        timeout_s: float | None = None,
    ) -> Run:
        """One move; `lands_in`: the phases the move leaves the run in (or a test of the
        run read back), which tells after a lost answer whether the move landed."""
        landed = lands_in if callable(lands_in) else (lambda run: run["phase"] in lands_in)

        async def already_applied() -> Run | None:
            run = await self.get_run(run_id)
            return run if landed(run) else None

        headers = lease_header(token) or {}
        if minimal:
            headers[PREFER] = RETURN_MINIMAL
        response = await self._sender.send(
            "POST",
            f"/runs/{run_id}/{step}",
            json=body,
            headers=headers or None,
            timeout_s=timeout_s,
            confirm=already_applied,
            replay=False,  # the phase machine and the lease refuse a move made twice
        )
        if isinstance(response, dict):
            return response
        return json_object(response)
