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
from service.api.routes.common import MOVE, answer_move
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
    responses=MOVE,
    operation_id="authorize_run",
    summary="Authorize (GRANTED) or deny (anything else) a CREATED run",
    description="CREATED -> AUTHORIZED with `decision: GRANTED`; any other decision fails the "
    "run with it as the reason. With `begin_execution`, a granted run goes on to EXECUTING "
    "in the same transaction.",
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
    responses=MOVE,
    operation_id="begin_execution",
    summary="Begin execution: AUTHORIZED -> EXECUTING",
    description="The worker starts the run's work. No body (or `{}`).",
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
    responses=MOVE,
    operation_id="complete_execution",
    summary="Record the execution outcome: EXECUTING -> GOVERNANCE_CHECK",
    description="The work is done (`success`) or failed (`error`); either way the run goes on "
    "to its governance check, which reconciles the acks the domains sent meanwhile.",
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
    responses=MOVE,
    operation_id="begin_finalization",
    summary="Begin finalization: GOVERNANCE_CHECK -> FINALIZING",
    description="Needs a recorded governance check. No body (or `{}`).",
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
    responses=MOVE,
    operation_id="finalize_run",
    summary="Finalize the run: COMPLETED or FAILED",
    description="From GOVERNANCE_CHECK or FINALIZING: COMPLETED when `success` (the default; "
    "needs a recorded governance check), FAILED with `error` otherwise. The body is optional.",
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
    responses=MOVE,
    operation_id="fail_run",
    summary="Fail the run, from any phase that is not terminal",
    description="FAILED with `error` as the reason. With the lease's token, the worker gives "
    "up; without one, a key with runs:write fails the run by hand (an operator's override, "
    "recorded with its key as actor).",
    tags=["operators"],
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
    responses=MOVE,
    operation_id="record_ungoverned_outcome",
    summary="Record the outcome without governance (ROK_ENABLED=false)",
    description="For a service with ROK_ENABLED=false: the run goes from any phase that is "
    "not terminal straight to COMPLETED or FAILED in one call (a legal path in its history), "
    "with no governance check. Refused (409) by a service that governs.",
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
