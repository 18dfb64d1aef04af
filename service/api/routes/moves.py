"""Lifecycle moves: each takes the run one step through the phase machine.

Every route has the same shape: its body, then answer_move with the one kernel
call it makes; the run comes back as that move committed it. On a leased run
the X-Lease-Token header must carry the current token (the kernel checks it).
The routes are sync (FastAPI runs each in the thread pool), but for
execution-complete, which may go on to wait for acks in a governance check.
"""

from __future__ import annotations

import contextlib
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Response
from starlette.concurrency import run_in_threadpool

from service.api.deps import AuthorityDep, LeaseTokenDep, MinimalDep, PrincipalDep
from service.api.routes.common import MOVE, answer_move, moved_run, mover, run_answer
from service.api.schemas import (
    AuthorizeIn,
    EmptyIn,
    ExecutionCompleteIn,
    FailIn,
    FinalizeIn,
    RunAnswer,
    UngovernedOutcomeIn,
)
from service.errors import GovernanceCheckError
from service.model.phases import RunPhase

router = APIRouter(prefix="/runs", tags=["runs"])


@router.post(
    "/{run_id}/authorize",
    response_model=RunAnswer,
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
    minimal: MinimalDep,
) -> Response:
    return answer_move(
        authority,
        run_id,
        lease_token,
        principal,
        lambda run: run.authorize(body.decision, body.reason, body.begin_execution),
        minimal=minimal,
    )


@router.post(
    "/{run_id}/begin-execution",
    response_model=RunAnswer,
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
    minimal: MinimalDep,
    body: Annotated[EmptyIn | None, Body()] = None,
) -> Response:
    return answer_move(
        authority,
        run_id,
        lease_token,
        principal,
        lambda run: run.begin_execution(),
        minimal=minimal,
    )


@router.post(
    "/{run_id}/execution-complete",
    response_model=RunAnswer,
    responses=MOVE,
    operation_id="complete_execution",
    summary="Record the execution outcome: EXECUTING -> GOVERNANCE_CHECK",
    description="The work is done (`success`) or failed (`error`); either way the run goes on "
    "to its governance check, which reconciles the acks the domains sent meanwhile. With "
    "`governance_check`, the check (and its `finalize`) follows in the same request.",
)
async def execution_complete(
    run_id: UUID,
    body: ExecutionCompleteIn,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
    minimal: MinimalDep,
) -> Response:
    # async: with a check, the wait for acks parks on the event loop, not on a pool thread
    kernel = mover(authority, run_id, lease_token, principal, minimal)
    await run_in_threadpool(kernel.execution_complete, body.success, body.error, body.result)
    check = body.governance_check
    moved = kernel.last_row
    if check is not None and moved is not None and moved.phase is RunPhase.GOVERNANCE_CHECK:
        # two moves with nothing in between but the acks already sent: each its own
        # transaction, as if the worker had sent the check itself
        with contextlib.suppress(GovernanceCheckError):  # strict: failed; the answer shows it
            await kernel.governance_check_async(
                check.timeout_ms, check.require_all_acks, check.finalize
            )
    return run_answer(moved_run(authority, kernel, minimal), minimal)


@router.post(
    "/{run_id}/begin-finalization",
    response_model=RunAnswer,
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
    minimal: MinimalDep,
    body: Annotated[EmptyIn | None, Body()] = None,
) -> Response:
    return answer_move(
        authority,
        run_id,
        lease_token,
        principal,
        lambda run: run.begin_finalization(),
        minimal=minimal,
    )


@router.post(
    "/{run_id}/finalize",
    response_model=RunAnswer,
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
    minimal: MinimalDep,
    body: Annotated[FinalizeIn | None, Body()] = None,
) -> Response:
    outcome = body or FinalizeIn()
    return answer_move(
        authority,
        run_id,
        lease_token,
        principal,
        lambda run: run.finalize(outcome.success, outcome.error),
        minimal=minimal,
    )


@router.post(
    "/{run_id}/fail",
    response_model=RunAnswer,
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
    minimal: MinimalDep,
) -> Response:
    return answer_move(
        authority, run_id, lease_token, principal, lambda run: run.fail(body.error), minimal=minimal
    )


@router.post(
    "/{run_id}/ungoverned-outcome",
    response_model=RunAnswer,
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
    minimal: MinimalDep,
) -> Response:
    return answer_move(
        authority,
        run_id,
        lease_token,
        principal,
        lambda run: run.record_ungoverned_outcome(body.success, body.error),
        minimal=minimal,
    )
