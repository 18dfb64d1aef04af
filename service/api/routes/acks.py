"""Acks: a domain reports an action it did (or failed to do) for a run; no lease needed."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, status

from service.api.auth import Principal
from service.api.deps import AuthorityDep, PrincipalDep, require
from service.api.presenters import ack_json
from service.api.routes.common import NOT_FOUND, POSTED, caller
from service.api.schemas import AckBatchIn, AckBatchOut, AckIn, AckOut
from service.kernel.spec import AckSpec
from service.store.keys import ACKS_PREFIX

router = APIRouter(prefix="/runs", tags=["runs"])


def require_domain(principal: Principal, domains: list[str]) -> None:
    """Evidence only its domain can give: an ack of domain D needs the acks:D scope."""
    for domain in dict.fromkeys(domains):
        require(principal, f"{ACKS_PREFIX}{domain}")


@router.post(
    "/{run_id}/acks",
    status_code=status.HTTP_201_CREATED,
    response_model=AckOut,
    responses={**NOT_FOUND, **POSTED},
    summary="A domain acknowledges (or reports failing) an action for the run",
)
def ack(
    run_id: UUID, body: AckIn, authority: AuthorityDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_domain(principal, [body.domain])
    recorded = authority.kernel(str(run_id), caller=caller(principal)).ack(
        body.domain, body.action, body.result_id, body.error, body.details
    )
    return ack_json(recorded)


@router.post(
    "/{run_id}/acks/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=AckBatchOut,
    responses={**NOT_FOUND, **POSTED},
    summary="Several acks for the run in one transaction: all recorded, in order, or none",
)
def ack_batch(
    run_id: UUID, body: AckBatchIn, authority: AuthorityDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_domain(principal, [a.domain for a in body.acks])
    recorded = authority.kernel(str(run_id), caller=caller(principal)).ack_many(
        [AckSpec(a.domain, a.action, a.result_id, a.error, a.details) for a in body.acks]
    )
    return {"acks": [ack_json(a) for a in recorded]}
