"""Lifecycle moves: each takes the run one step through the phase machine.

Every route has the same shape: its body, then answer_move with the one kernel
call it makes; the run comes back as that move committed it. On a leased run
the X-Lease-Token header must carry the current token (the kernel checks it).
The routes are sync: FastAPI runs each in the thread pool.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Response

from service.api.deps import AuthorityDep, LeaseTokenDep, PrincipalDep
from service.api.routes.common import ERRORS, answer_move
from service.api.schemas import (
    AuthorizeIn,
    EmptyIn,
    ExecutionCompleteIn,
    FailIn,
    FinalizeIn,
    RunOut,
    UngovernedOutcomeIn,
)

router = APIRouter(prefix="/runs", tags=["runs"])


@router.post(
    "/{run_id}/authorize",
    response_model=RunOut,
    responses=ERRORS,
    summary="Authorize (GRANTED) or deny (anything else) a CREATED run; optionally begin execution",
)
def authorize(
    run_id: UUID,
    body: AuthorizeIn,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
) -> Response:
    return answer_move(
        authority,
        run_id,
        lease_token,
        principal,
        lambda run: run.authorize(body.decision, body.reason, body.begin_execution),
    )


@router.post(
    "/{run_id}/begin-execution",
    response_model=RunOut,
    responses=ERRORS,
    summary="AUTHORIZED -> EXECUTING",
)
def begin_execution(
    run_id: UUID,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
    body: Annotated[EmptyIn | None, Body()] = None,
) -> Response:
    return answer_move(authority, run_id, lease_token, principal, lambda run: run.begin_execution())


@router.post(
    "/{run_id}/execution-complete",
    response_model=RunOut,
    responses=ERRORS,
    summary="EXECUTING -> GOVERNANCE_CHECK with the execution outcome",
)
def execution_complete(
    run_id: UUID,
    body: ExecutionCompleteIn,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
) -> Response:
    return answer_move(
        authority,
        run_id,
        lease_token,
        principal,
        lambda run: run.execution_complete(body.success, body.error, body.result),
    )


@router.post(
    "/{run_id}/begin-finalization",
    response_model=RunOut,
    responses=ERRORS,
    summary="GOVERNANCE_CHECK -> FINALIZING (needs a recorded governance check)",
)
def begin_finalization(
    run_id: UUID,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
    body: Annotated[EmptyIn | None, Body()] = None,
) -> Response:
    return answer_move(
        authority, run_id, lease_token, principal, lambda run: run.begin_finalization()
    )


@router.post(
    "/{run_id}/finalize",
    response_model=RunOut,
    responses=ERRORS,
    summary="-> COMPLETED (needs a recorded governance check) or FAILED",
)
def finalize(
    run_id: UUID,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
    body: Annotated[FinalizeIn | None, Body()] = None,
) -> Response:
    outcome = body or FinalizeIn()
    return answer_move(
        authority,
        run_id,
        lease_token,
        principal,
        lambda run: run.finalize(outcome.success, outcome.error),
    )


@router.post(
    "/{run_id}/fail",
    response_model=RunOut,
    responses=ERRORS,
    summary="-> FAILED from any non-terminal phase (no token: operator override)",
)
def fail(
    run_id: UUID,
    body: FailIn,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
) -> Response:
    return answer_move(authority, run_id, lease_token, principal, lambda run: run.fail(body.error))


@router.post(
    "/{run_id}/ungoverned-outcome",
    response_model=RunOut,
    responses=ERRORS,
    summary="ROK_ENABLED=false: record the outcome in one call, without governance",
)
def ungoverned_outcome(
    run_id: UUID,
    body: UngovernedOutcomeIn,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
) -> Response:
    return answer_move(
        authority,
        run_id,
        lease_token,
        principal,
        lambda run: run.record_ungoverned_outcome(body.success, body.error),
    )
