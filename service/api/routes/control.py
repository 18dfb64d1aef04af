"""Run control: cancel a run, approve or reject one that waits for a human, give one back.

DESIGN section 11. Each answers the run as its step committed it, like a move.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Response

from service.api.deps import AuthorityDep, LeaseTokenDep, MinimalDep, PrincipalDep, require
from service.api.routes.common import MOVE, answer_move
from service.api.schemas import CancelIn, DecisionIn, EmptyIn, RunAnswer
from service.store.keys import RUNS_WRITE

router = APIRouter(prefix="/runs", tags=["runs"])


@router.post(
    "/{run_id}/cancel",
    response_model=RunAnswer,
    responses=MOVE,
    operation_id="cancel_run",
    tags=["operators"],
    summary="Cancel a run: FAILED now, or (executing) its worker is told to stop",
    description="A run that is not executing under a live lease is FAILED at once, its "
    "error `cancelled: <reason>`. An executing run gets `cancel_requested: true`: its "
    "worker learns it from the next heartbeat, stops the handler and fails the run through "
    "execution-complete, so its incident and governance check still happen; past "
    "ROK_CANCEL_GRACE_MS the sweeper fails it. Who asked is in the history.",
)
def cancel(
    run_id: UUID,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
    minimal: MinimalDep,
    body: Annotated[CancelIn | None, Body()] = None,
) -> Response:
    reason = (body or CancelIn()).reason or "no reason given"
    return answer_move(
        authority, run_id, lease_token, principal, lambda run: run.cancel(reason), minimal=minimal
    )


@router.post(
    "/{run_id}/approve",
    response_model=RunAnswer,
    responses=MOVE,
    operation_id="approve_run",
    tags=["operators"],
    summary="Approve a run that waits for approval: claims may take it from now on",
    description="For a run created with `requires_approval` (or held by a policy at "
    "authorization): its `approval` becomes approved with who decided (`by`, else the key's "
    "id) and why, and it is claimable again. Needs runs:write; a worker key never approves.",
)
def approve(
    run_id: UUID,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
    minimal: MinimalDep,
    body: Annotated[DecisionIn | None, Body()] = None,
) -> Response:
    require(principal, RUNS_WRITE)  # a worker key never approves what it would run
    decision = body or DecisionIn()
    return answer_move(
        authority,
        run_id,
        lease_token,
        principal,
        lambda run: run.approve(decision.by, decision.reason),
        minimal=minimal,
    )


@router.post(
    "/{run_id}/reject",
    response_model=RunAnswer,
    responses=MOVE,
    operation_id="reject_run",
    tags=["operators"],
    summary="Reject a run that waits for approval: it fails, the decision in its history",
    description="FAILED with `approval rejected by <by>: <reason>`; its `approval` is "
    "rejected. Needs runs:write.",
)
def reject(
    run_id: UUID,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
    minimal: MinimalDep,
    body: Annotated[DecisionIn | None, Body()] = None,
) -> Response:
    require(principal, RUNS_WRITE)
    decision = body or DecisionIn()
    return answer_move(
        authority,
        run_id,
        lease_token,
        principal,
        lambda run: run.reject(decision.by, decision.reason),
        minimal=minimal,
    )


@router.post(
    "/{run_id}/release",
    response_model=RunAnswer,
    responses=MOVE,
    operation_id="release_run",
    tags=["workers"],
    summary="The lease holder gives the run back: claimable again, nothing else changes",
    description="With the lease's `X-Lease-Token`: the lease is dropped and the run waits "
    "for the next claim in the phase it is in; its attempt, history and evidence stay.",
)
def release(
    run_id: UUID,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
    minimal: MinimalDep,
    body: Annotated[EmptyIn | None, Body()] = None,
) -> Response:
    return answer_move(
        authority, run_id, lease_token, principal, lambda run: run.release(), minimal=minimal
    )
