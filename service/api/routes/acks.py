"""Acks: a domain reports an action it did (or failed to do) for a run; no lease needed."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, status

from service.api.deps import AuthorityDep
from service.api.presenters import ack_json
from service.api.routes.common import NOT_FOUND
from service.api.schemas import AckBatchIn, AckBatchOut, AckIn, AckOut
from service.kernel.spec import AckSpec

router = APIRouter(prefix="/runs", tags=["runs"])


@router.post(
    "/{run_id}/acks",
    status_code=status.HTTP_201_CREATED,
    response_model=AckOut,
    responses=NOT_FOUND,
    summary="A domain acknowledges (or reports failing) an action for the run",
)
def ack(run_id: UUID, body: AckIn, authority: AuthorityDep) -> dict[str, Any]:
    recorded = authority.kernel(str(run_id)).ack(
        body.domain, body.action, body.result_id, body.error, body.details
    )
    return ack_json(recorded)


@router.post(
    "/{run_id}/acks/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=AckBatchOut,
    responses=NOT_FOUND,
    summary="Several acks for the run in one transaction: all recorded, in order, or none",
)
def ack_batch(run_id: UUID, body: AckBatchIn, authority: AuthorityDep) -> dict[str, Any]:
    recorded = authority.kernel(str(run_id)).ack_many(
        [AckSpec(a.domain, a.action, a.result_id, a.error, a.details) for a in body.acks]
    )
    return {"acks": [ack_json(a) for a in recorded]}
