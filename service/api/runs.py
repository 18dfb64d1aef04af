"""The /runs router: parse, call the kernel, serialise. No rules live here."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from service.api.presenters import RokJSONResponse, ack_json, reconciliation_json, run_json
from service.api.schemas import (
    AckBatchIn,
    AckBatchOut,
    AckIn,
    AckOut,
    AuthorizeIn,
    ClaimIn,
    ClaimOut,
    CreateRunIn,
    EmptyIn,
    ErrorOut,
    ExecutionCompleteIn,
    FailIn,
    FinalizeIn,
    GovernanceCheckIn,
    GovernanceCheckOut,
    HeartbeatIn,
    LeaseGrantOut,
    ReconciliationOut,
    RunOut,
    RunPageOut,
    UngovernedOutcomeIn,
    check_storable,
)
from service.authority import Authority
from service.errors import GovernanceCheckError, InvalidRequest
from service.kernel.kernel import AckSpec, RunOrchestrationKernel, create_rok
from service.model.phases import RunPhase
from service.store.runs import RunFilter
from service.store.signals import CLAIMABLE

router = APIRouter(prefix="/runs", tags=["runs"])

# A waiting claim re-reads at least this often: the safety net for runs made
# claimable by another process that could not wake this one.
CLAIM_RECHECK_S = 1.0

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No run with that id."},
    409: {"model": ErrorOut, "description": "The phase machine or the lease forbids this move."},
}
LeaseToken = Annotated[
    str | None,
    Header(
        alias="X-Lease-Token",
        description="The token of the run's current lease; required once a worker claimed it.",
    ),
]


def _authority(request: Request) -> Authority:
    authority: Authority = request.app.state.authority
    return authority


def _run(authority: Authority, run_id: str) -> RokJSONResponse:
    return RokJSONResponse(run_json(authority.store.get(run_id), authority.clock()))


def _mover(authority: Authority, run_id: UUID, lease_token: str | None) -> RunOrchestrationKernel:
    """A kernel that keeps the run as each move committed it, for the answer."""
    return authority.kernel(str(run_id), lease_token, keep_records=True)


def _moved_json(authority: Authority, kernel: RunOrchestrationKernel) -> dict[str, Any]:
    record = kernel.last_record
    assert record is not None, "a kernel from _mover() answers after a committed move"
    return run_json(record, authority.clock())


def _moved(authority: Authority, kernel: RunOrchestrationKernel) -> RokJSONResponse:
    return RokJSONResponse(_moved_json(authority, kernel))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RunOut,
    responses={
        200: {"model": RunOut, "description": "Replay of an idempotency key: the same run."},
        409: {"model": ErrorOut, "description": "A run with that run_id exists."},
    },
    summary="Create a run and declare its audit contract (T0)",
)
def create_run(body: CreateRunIn, request: Request) -> Response:
    authority = _authority(request)
    kernel = create_rok(
        str(body.run_id) if body.run_id else None,
        tenant_id=body.tenant_id,
        run_timeout_ms=body.run_timeout_ms,
        store=authority.store,
        settings=authority.settings,
        handler=body.handler,
        input=body.input,
        expectations=(
            [(e.domain, e.action, e.deadline_ms) for e in body.expectations]
            if body.expectations is not None
            else None
        ),
        idempotency_key=body.idempotency_key,
        max_attempts=body.max_attempts,
        priority=body.priority,
    )
    created = kernel.declare_expectations()
    answer = _run(authority, kernel.run_id)
    answer.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return answer


@router.post(
    "/claim",
    response_model=ClaimOut,
    responses={204: {"description": "No run waited (within wait_ms)."}},
    summary="Lease the next waiting run (highest priority, then oldest) to a worker",
)
async def claim(body: ClaimIn, request: Request) -> Any:
    authority = _authority(request)
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
    summary="Extend the caller's lease (409 once it expired or belongs to someone else)",
)
def heartbeat(
    run_id: UUID, body: HeartbeatIn, request: Request, lease_token: LeaseToken = None
) -> dict[str, Any]:
    authority = _authority(request)
    lease = authority.leases.heartbeat(
        str(run_id),
        body.worker_id,
        body.lease_token or lease_token,
        body.lease_ms,
        authority.clock(),
    )
    return {"worker_id": lease.worker_id, "token": lease.token, "expires_at": lease.expires_at}


@router.get("", response_model=RunPageOut, summary="List runs, newest first")
def list_runs(
    request: Request,
    phase: RunPhase | None = None,
    tenant_id: str | None = None,
    handler: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> Response:
    authority = _authority(request)
    for name, value in (("tenant_id", tenant_id), ("handler", handler), ("cursor", cursor)):
        if value is not None:
            try:
                check_storable(value, name)
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from None
    records, next_cursor = authority.store.list(
        RunFilter(phase=phase, tenant_id=tenant_id, handler=handler), limit, cursor
    )
    now = authority.clock()
    return RokJSONResponse(
        {"items": [run_json(r, now) for r in records], "next_cursor": next_cursor}
    )


@router.get("/{run_id}", response_model=RunOut, responses=ERRORS, summary="Get a run")
def get_run(run_id: UUID, request: Request) -> Response:
    return _run(_authority(request), str(run_id))


@router.post(
    "/{run_id}/authorize",
    response_model=RunOut,
    responses=ERRORS,
    summary="Authorize (GRANTED) or deny (anything else) a CREATED run; optionally begin execution",
)
def authorize(
    run_id: UUID, body: AuthorizeIn, request: Request, lease_token: LeaseToken = None
) -> Response:
    authority = _authority(request)
    kernel = _mover(authority, run_id, lease_token)
    kernel.authorize(body.decision, body.reason, body.begin_execution)
    return _moved(authority, kernel)


@router.post(
    "/{run_id}/begin-execution",
    response_model=RunOut,
    responses=ERRORS,
    summary="AUTHORIZED -> EXECUTING",
)
def begin_execution(
    run_id: UUID,
    request: Request,
    body: Annotated[EmptyIn | None, Body()] = None,
    lease_token: LeaseToken = None,
) -> Response:
    authority = _authority(request)
    kernel = _mover(authority, run_id, lease_token)
    kernel.begin_execution()
    return _moved(authority, kernel)


@router.post(
    "/{run_id}/execution-complete",
    response_model=RunOut,
    responses=ERRORS,
    summary="EXECUTING -> GOVERNANCE_CHECK with the execution outcome",
)
def execution_complete(
    run_id: UUID, body: ExecutionCompleteIn, request: Request, lease_token: LeaseToken = None
) -> Response:
    authority = _authority(request)
    kernel = _mover(authority, run_id, lease_token)
    kernel.execution_complete(body.success, body.error)
    return _moved(authority, kernel)


@router.post(
    "/{run_id}/acks",
    status_code=status.HTTP_201_CREATED,
    response_model=AckOut,
    responses={404: ERRORS[404]},
    summary="A domain acknowledges (or reports failing) an action for the run",
)
def ack(run_id: UUID, body: AckIn, request: Request) -> dict[str, Any]:
    authority = _authority(request)
    recorded = authority.kernel(str(run_id)).ack(
        body.domain, body.action, body.result_id, body.error, body.details
    )
    return ack_json(recorded)


@router.post(
    "/{run_id}/acks/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=AckBatchOut,
    responses={404: ERRORS[404]},
    summary="Several acks for the run in one transaction: all recorded, in order, or none",
)
def ack_batch(run_id: UUID, body: AckBatchIn, request: Request) -> dict[str, Any]:
    authority = _authority(request)
    recorded = authority.kernel(str(run_id)).ack_many(
        [AckSpec(a.domain, a.action, a.result_id, a.error, a.details) for a in body.acks]
    )
    return {"acks": [ack_json(a) for a in recorded]}


@router.post(
    "/{run_id}/governance-check",
    response_model=GovernanceCheckOut,
    responses=ERRORS,
    summary="Wait for the domain acks (up to timeout_ms), reconcile and record the check; "
    "optionally finalize",
)
async def governance_check(
    run_id: UUID,
    request: Request,
    body: Annotated[GovernanceCheckIn | None, Body()] = None,
    lease_token: LeaseToken = None,
) -> Response:
    authority = _authority(request)
    body = body or GovernanceCheckIn()
    kernel = _mover(authority, run_id, lease_token)
    try:
        outcome = await kernel.governance_check_async(
            body.timeout_ms, body.require_all_acks, body.finalize
        )
    except GovernanceCheckError as failed:
        # strict mode: the run is already FAILED; the answer is still the check (200)
        outcome = failed.outcome
    run = _moved_json(authority, kernel)
    return RokJSONResponse(
        {
            "passed": outcome.passed,
            "reconciliation": reconciliation_json(outcome.reconciliation),
            "run": run,
        }
    )


@router.post(
    "/{run_id}/begin-finalization",
    response_model=RunOut,
    responses=ERRORS,
    summary="GOVERNANCE_CHECK -> FINALIZING (needs a recorded governance check)",
)
def begin_finalization(
    run_id: UUID,
    request: Request,
    body: Annotated[EmptyIn | None, Body()] = None,
    lease_token: LeaseToken = None,
) -> Response:
    authority = _authority(request)
    kernel = _mover(authority, run_id, lease_token)
    kernel.begin_finalization()
    return _moved(authority, kernel)


@router.post(
    "/{run_id}/finalize",
    response_model=RunOut,
    responses=ERRORS,
    summary="-> COMPLETED (needs a recorded governance check) or FAILED",
)
def finalize(
    run_id: UUID,
    request: Request,
    body: Annotated[FinalizeIn | None, Body()] = None,
    lease_token: LeaseToken = None,
) -> Response:
    authority = _authority(request)
    body = body or FinalizeIn()
    kernel = _mover(authority, run_id, lease_token)
    kernel.finalize(body.success, body.error)
    return _moved(authority, kernel)


@router.post(
    "/{run_id}/fail",
    response_model=RunOut,
    responses=ERRORS,
    summary="-> FAILED from any non-terminal phase (no token: operator override)",
)
def fail(run_id: UUID, body: FailIn, request: Request, lease_token: LeaseToken = None) -> Response:
    authority = _authority(request)
    kernel = _mover(authority, run_id, lease_token)
    kernel.fail(body.error)
    return _moved(authority, kernel)


@router.get(
    "/{run_id}/reconciliation",
    response_model=ReconciliationOut,
    responses={404: ERRORS[404]},
    summary="The run's reconciliation as of now",
)
def reconciliation(run_id: UUID, request: Request) -> dict[str, Any]:
    authority = _authority(request)
    return reconciliation_json(authority.kernel(str(run_id)).reconciliation())


@router.post(
    "/{run_id}/ungoverned-outcome",
    response_model=RunOut,
    responses=ERRORS,
    summary="ROK_ENABLED=false: record the outcome in one call, without governance",
)
def ungoverned_outcome(
    run_id: UUID, body: UngovernedOutcomeIn, request: Request, lease_token: LeaseToken = None
) -> Response:
    authority = _authority(request)
    kernel = _mover(authority, run_id, lease_token)
    kernel.record_ungoverned_outcome(body.success, body.error)
    return _moved(authority, kernel)
