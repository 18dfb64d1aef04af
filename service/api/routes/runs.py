"""Runs: create one (T0: its audit contract is declared with it), list them, read one."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Header, Query, Response, status

from service.api.deps import AuthorityDep, MinimalDep, PrincipalDep, require, require_tenant
from service.api.errors import RUN_EXISTS, problem
from service.api.presenters import RokJSONResponse, run_json, run_state_json, run_summary_json
from service.api.routes.common import READ_MANY, READ_ONE, caller, problems, run_answer
from service.api.schemas import (
    CreateRunIn,
    RetryIn,
    RunAnswer,
    RunOut,
    RunPageOut,
    check_storable,
)
from service.authority import Authority
from service.errors import InvalidRequest
from service.kernel import RunOrchestrationKernel, RunSpec
from service.model.phases import RunPhase
from service.store.keys import RUNS_READ, RUNS_WRITE
from service.store.records import RetryPolicy
from service.store.runs import RunFilter
from service.store.summaries import list_summaries
from service.telemetry import traceparent_now

router = APIRouter(prefix="/runs", tags=["runs"])


def _retry_policy(retry: RetryIn | None) -> RetryPolicy | None:
    if retry is None:
        return None
    return RetryPolicy(retry.backoff_ms, float(retry.multiplier), retry.max_backoff_ms)


def _run(authority: Authority, run_id: str) -> RokJSONResponse:
    return RokJSONResponse(run_json(authority.store.get(run_id), authority.clock()))


def _created(authority: Authority, run_id: str, created: bool, minimal: bool) -> RokJSONResponse:
    """The run as created (201), or as it already was under its idempotency key (200)."""
    status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    if minimal:
        return run_answer(run_state_json(authority.store.get_row(run_id)), True, status_code)
    answer = _run(authority, run_id)
    answer.status_code = status_code
    return answer


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RunAnswer,
    responses={
        200: {
            "model": RunAnswer,
            "description": "The run already existed with this `idempotency_key` (in the body): "
            "the same run, created once.",
        },
        **problems(
            401,
            403,
            409,
            413,
            422,
            429,
            conflict="a run with that `run_id` exists (`run_exists`)",
            conflict_example=problem(
                RUN_EXISTS, "run b9d1540a-9a04-4676-b249-83d6b461aa91 already exists", "/runs"
            ),
        ),
    },
    operation_id="create_run",
    summary="Create a run and declare its audit contract (T0)",
    description="The run starts in CREATED with its contract: the (domain, action) pairs its "
    "governance domains must ack, each with a deadline (`expectations`, else the four default "
    "domain expectations), plus orchestrator/finalize_run. 201 with the new run; 200 with the "
    "existing run when its `idempotency_key` was used before by this tenant. A worker claims "
    "it next (`claim_run`); a key with runs:write may also move it by hand.",
)
def create_run(
    body: CreateRunIn,
    authority: AuthorityDep,
    principal: PrincipalDep,
    minimal: MinimalDep,
    traceparent: Annotated[
        str | None,
        Header(
            description="W3C trace context: the run joins this trace (a malformed value is "
            "ignored). With tracing on, the run keeps the span of this request instead."
        ),
    ] = None,
) -> Response:
    require(principal, RUNS_WRITE)
    run_id = str(body.run_id) if body.run_id else None
    spec = RunSpec(
        tenant_id=require_tenant(principal, body.tenant_id),
        handler=body.handler,
        input=body.input,
        run_timeout_ms=body.run_timeout_ms,
        expectations=(
            [(e.domain, e.action, e.deadline_ms) for e in body.expectations]
            if body.expectations is not None
            else None
        ),
        idempotency_key=body.idempotency_key,
        max_attempts=body.retry.max_attempts if body.retry else body.max_attempts,
        priority=body.priority,
        concurrency_keys=tuple(body.concurrency_keys),
        not_before=body.not_before,
        queue_timeout_ms=body.queue_timeout_ms,
        retry=_retry_policy(body.retry),
        requires_approval=body.requires_approval,
        approval_timeout_ms=body.approval_timeout_ms,
        traceparent=traceparent_now(traceparent),
    )
    kernel = RunOrchestrationKernel(
        run_id or str(uuid4()),
        authority.store,
        authority.settings,
        spec=spec,
        caller_run_id=run_id,
        caller=caller(principal),
    )
    created = kernel.declare_expectations()
    return _created(authority, kernel.run_id, created, minimal)


@router.get(
    "",
    response_model=RunPageOut,
    responses=READ_MANY,
    operation_id="list_runs",
    summary="List runs, newest first, as summaries",
    description="Filter by phase, tenant and handler; page with `limit` and the `next_cursor` "
    "of the previous page (null on the last one). A key of a tenant sees that tenant's runs "
    "only. Each summary carries the status of the run's reconciliation as of now; "
    "`get_run` has the whole run.",
)
def list_runs(
    authority: AuthorityDep,
    principal: PrincipalDep,
    phase: RunPhase | None = None,
    tenant_id: str | None = None,
    handler: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> Response:
    for name, value in (("tenant_id", tenant_id), ("handler", handler), ("cursor", cursor)):
        if value is not None:
            try:
                check_storable(value, name)
            except ValueError as exc:
                raise InvalidRequest(str(exc), loc=("query", name)) from None
    require(principal, RUNS_READ)
    tenant_id = require_tenant(principal, tenant_id)
    summaries, next_cursor = list_summaries(
        authority.database,
        RunFilter(phase=phase, tenant_id=tenant_id, handler=handler),
        limit,
        cursor,
    )
    now = authority.clock()
    return RokJSONResponse(
        {"items": [run_summary_json(s, now) for s in summaries], "next_cursor": next_cursor}
    )


@router.get(
    "/{run_id}",
    response_model=RunOut,
    responses=READ_ONE,
    operation_id="get_run",
    summary="Get a run",
    description="The whole run: its phase, attempt, lease, history, contract (expectations "
    "with deadlines and status), acks, incidents, the last recorded governance check and the "
    "reconciliation as of now.",
)
def get_run(run_id: UUID, authority: AuthorityDep, principal: PrincipalDep) -> Response:
    require(principal, RUNS_READ)
    record = authority.kernel(str(run_id), caller=caller(principal)).load()
    return RokJSONResponse(run_json(record, authority.clock()))
