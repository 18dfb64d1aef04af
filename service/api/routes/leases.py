"""Leases: a worker claims the next waiting run, and keeps it by heartbeat."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool

from service.api.deps import AuthorityDep, LeaseTokenDep, PrincipalDep, require
from service.api.presenters import run_json
from service.api.routes.common import AUTH, ERRORS, POSTED
from service.api.schemas import ClaimIn, ClaimOut, HeartbeatIn, LeaseGrantOut
from service.store.keys import WORKER
from service.store.signals import CLAIMABLE

router = APIRouter(prefix="/runs", tags=["runs"])

# A waiting claim re-reads at least this often: the safety net for runs made
# claimable by another process that could not wake this one.
CLAIM_RECHECK_S = 1.0


@router.post(
    "/claim",
    response_model=ClaimOut,
    responses={204: {"description": "No run waited (within wait_ms)."}, **AUTH, **POSTED},
    summary="Lease the next waiting run (highest priority, then oldest) to a worker",
)
async def claim(
    body: ClaimIn, request: Request, authority: AuthorityDep, principal: PrincipalDep
) -> Any:
    require(principal, WORKER)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + body.wait_ms / 1000.0
    while True:
        # subscribe first, so a run created between the query and the wait still wakes us
        with authority.signals.subscribe(CLAIMABLE, loop) as sub:
            if await request.is_disconnected():
                # nobody would receive the lease: leasing now would strand the run
                return Response(status_code=status.HTTP_204_NO_CONTENT)
            claimed = await run_in_threadpool(
                authority.leases.claim,
                body.worker_id,
                body.lease_ms,
                body.handlers,
                authority.clock(),
                body.claim_id,
                principal.tenant_scope,
            )
            if claimed is not None:
                record, lease = claimed
                return {
                    "run": run_json(record, authority.clock()),
                    "lease": {
                        "worker_id": lease.worker_id,
                        "token": lease.token,
                        "expires_at": lease.expires_at,
                    },
                }
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Response(status_code=status.HTTP_204_NO_CONTENT)
            await sub.wait(min(remaining, CLAIM_RECHECK_S))


@router.post(
    "/{run_id}/heartbeat",
    response_model=LeaseGrantOut,
    responses=ERRORS,
    summary="Extend the caller's lease, given its token (409 without it, with a stale one, "
    "for another worker, or once it expired)",
)
def heartbeat(
    run_id: UUID,
    body: HeartbeatIn,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    require(principal, WORKER)
    lease = authority.leases.heartbeat(
        str(run_id),
        body.worker_id,
        body.lease_token or lease_token,
        body.lease_ms,
        authority.clock(),
        principal.tenant_scope,
    )
    return {
        "worker_id": lease.worker_id,
        "token": lease.token,
        "expires_at": lease.expires_at,
        "cancel_requested": lease.cancel_reason is not None,
        "cancel_reason": lease.cancel_reason,
    }
