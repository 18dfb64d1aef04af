"""Runs: create one (T0: its audit contract is declared with it), list them, read one."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Response, status

from service.api.deps import AuthorityDep, PrincipalDep, require, require_tenant
from service.api.presenters import RokJSONResponse, run_json, run_summary_json
from service.api.routes.common import AUTH, NOT_FOUND, POSTED, caller
from service.api.schemas import CreateRunIn, ErrorOut, RunOut, RunPageOut, check_storable
from service.authority import Authority
from service.errors import InvalidRequest
from service.kernel import RunOrchestrationKernel, RunSpec
from service.model.phases import RunPhase
from service.store.keys import RUNS_READ, RUNS_WRITE
from service.store.runs import RunFilter
from service.store.summaries import list_summaries

router = APIRouter(prefix="/runs", tags=["runs"])


def _run(authority: Authority, run_id: str) -> RokJSONResponse:
    return RokJSONResponse(run_json(authority.store.get(run_id), authority.clock()))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RunOut,
    responses={
        200: {"model": RunOut, "description": "Replay of an idempotency key: the same run."},
        **AUTH,
        **POSTED,
        409: {
            "model": ErrorOut,
            "description": "A run with that run_id exists, or a request with the same "
            "Idempotency-Key is still running.",
        },
    },
    summary="Create a run and declare its audit contract (T0)",
)
def create_run(body: CreateRunIn, authority: AuthorityDep, principal: PrincipalDep) -> Response:
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
        max_attempts=body.max_attempts,
        priority=body.priority,
        concurrency_keys=tuple(body.concurrency_keys),
    )
    # built here rather than by create_rok, which does not take concurrency_keys yet
    kernel = RunOrchestrationKernel(
        run_id or str(uuid4()),
        authority.store,
        authority.settings,
        spec=spec,
        caller_run_id=run_id,
        caller=caller(principal),
    )
    created = kernel.declare_expectations()
    answer = _run(authority, kernel.run_id)
    answer.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return answer


@router.get(
    "",
    response_model=RunPageOut,
    responses=AUTH,
    summary="List runs, newest first, as summaries (GET /runs/{run_id} has the whole run)",
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
                raise InvalidRequest(str(exc)) from None
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


@router.get("/{run_id}", response_model=RunOut, responses=NOT_FOUND, summary="Get a run")
def get_run(run_id: UUID, authority: AuthorityDep, principal: PrincipalDep) -> Response:
    require(principal, RUNS_READ)
    record = authority.kernel(str(run_id), caller=caller(principal)).load()
    return RokJSONResponse(run_json(record, authority.clock()))
