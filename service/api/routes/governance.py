"""Governance: the check that reconciles a run's acks with its contract, and the
reconciliation as of now."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Response

from service.api.deps import AuthorityDep, LeaseTokenDep, MinimalDep, PrincipalDep, require
from service.api.presenters import reconciliation_json
from service.api.routes.common import MOVE, READ_ONE, caller, moved_run, mover, run_answer
from service.api.schemas import GovernanceCheckIn, GovernanceCheckOut, ReconciliationOut
from service.errors import GovernanceCheckError
from service.store.keys import RUNS_READ

router = APIRouter(prefix="/runs", tags=["evidence"])


@router.post(
    "/{run_id}/governance-check",
    response_model=GovernanceCheckOut,
    responses=MOVE,
    operation_id="check_governance",
    summary="Reconcile the run's acks with its contract and record the verdict",
    description="On a run in GOVERNANCE_CHECK: waits up to `timeout_ms` for the expected acks, "
    "reconciles them with the contract and records the check (the verdict never changes "
    "after). With `require_all_acks`, a check that does not pass fails the run (the answer "
    "is still 200, with the check). With `finalize`, the run is finalized in the same "
    "transaction. The body is optional.",
)
async def governance_check(
    run_id: UUID,
    authority: AuthorityDep,
    lease_token: LeaseTokenDep,
    principal: PrincipalDep,
    minimal: MinimalDep,
    body: Annotated[GovernanceCheckIn | None, Body()] = None,
) -> Response:
    # async on purpose: the wait for acks parks on the event loop, not on a pool thread
    check = body or GovernanceCheckIn()
    kernel = mover(authority, run_id, lease_token, principal, minimal)
    try:
        outcome = await kernel.governance_check_async(
            check.timeout_ms, check.require_all_acks, check.finalize
        )
    except GovernanceCheckError as failed:
        # strict mode: the run is already FAILED; the answer is still the check (200)
        outcome = failed.outcome
    return run_answer(
        {
            "passed": outcome.passed,
            "reconciliation": reconciliation_json(outcome.reconciliation),
            "run": moved_run(authority, kernel, minimal),
        },
        minimal,
    )


@router.get(
    "/{run_id}/reconciliation",
    response_model=ReconciliationOut,
    responses=READ_ONE,
    operation_id="get_reconciliation",
    summary="The run's reconciliation as of now",
    description="The contract against the acks at this moment: what is missing, drifted, "
    "invalid, failed or still pending, and whether the run went stale. Recorded nowhere; "
    "the governance check records its own.",
)
def reconciliation(
    run_id: UUID, authority: AuthorityDep, principal: PrincipalDep
) -> dict[str, Any]:
    require(principal, RUNS_READ)
    kernel = authority.kernel(str(run_id), caller=caller(principal))
    return reconciliation_json(kernel.reconciliation())
