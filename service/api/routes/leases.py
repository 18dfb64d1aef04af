"""Leases: a worker claims the next waiting run, and keeps it by heartbeat."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool

from service.api.deps import AuthorityDep, LeaseTokenDep, PrincipalDep, require
from service.api.presenters import run_json
from service.api.routes.common import POST_NEW, problems
from service.api.schemas import ClaimIn, ClaimOut, HeartbeatIn, LeaseGrantOut
from service.store.keys import WORKER
from service.store.signals import CLAIMABLE

router = APIRouter(prefix="/runs", tags=["workers"])

# A waiting claim re-reads at least this often: the safety net for runs made
# claimable by another process that could not wake this one.
CLAIM_RECHECK_S = 1.0


@router.post(
    "/claim",
    response_model=ClaimOut,
    responses={204: {"description": "No run waited (within `wait_ms`)."}, **POST_NEW},
    operation_id="claim_run",
    summary="Lease the next waiting run to a worker",
    description="Takes the next claimable run (highest priority, then oldest; only `handlers` "
    "when given; the key's tenant only) and leases it to `worker_id` for `lease_ms`. The "
    "answer carries the run and the lease's token: send it as `X-Lease-Token` on every move "
    "and heartbeat. With `wait_ms` the call long-polls; 204 when no run came in time. Retrying "
    "with the same `claim_id` returns the lease the first try took, never a second run.",
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
    responses=problems(
        401,
        403,
        404,
        409,
        413,
        422,
        429,
        conflict="the lease is not the caller's any more (`lease_conflict`: no token, a "
        "stale one, another worker's, or it expired)",
    ),
    operation_id="heartbeat",
    summary="Extend the caller's lease",
    description="Extends the lease by `lease_ms` from now, given its token (in the body or in "
    "`X-Lease-Token`). A 409 means the run is no longer this worker's: stop working on it.",
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
