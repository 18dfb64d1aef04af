"""Acks: a domain reports an action it did (or failed to do) for a run; no lease needed."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, status

from service.api.auth import Principal
from service.api.deps import AuthorityDep, PrincipalDep, require
from service.api.presenters import ack_json
from service.api.routes.common import POST_ON_RUN, caller
from service.api.schemas import AckBatchIn, AckBatchOut, AckIn, AckOut
from service.kernel.spec import AckSpec
from service.store.keys import ACKS_PREFIX

router = APIRouter(prefix="/runs", tags=["evidence"])


def require_domain(principal: Principal, domains: list[str]) -> None:
    """Evidence only its domain can give: an ack of domain D needs the acks:D scope."""
    for domain in dict.fromkeys(domains):
        require(principal, f"{ACKS_PREFIX}{domain}")


@router.post(
    "/{run_id}/acks",
    status_code=status.HTTP_201_CREATED,
    response_model=AckOut,
    responses=POST_ON_RUN,
    operation_id="record_ack",
    summary="A domain acknowledges (or reports failing) an action for the run",
    description="Evidence for the run's contract: `domain` did `action` (its `result_id`), or "
    "failed to (`error`). Needs the key's acks:<domain> scope, no lease. An ack after the "
    "governance verdict or the run's end is kept and marked `late`, never counted.",
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
    responses=POST_ON_RUN,
    operation_id="record_acks",
    summary="Several acks for the run in one transaction",
    description="All recorded, in the order sent, or none (the first refusal answers). "
    "Each ack as `record_ack` takes it.",
)
def ack_batch(
    run_id: UUID, body: AckBatchIn, authority: AuthorityDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_domain(principal, [a.domain for a in body.acks])
    recorded = authority.kernel(str(run_id), caller=caller(principal)).ack_many(
        [AckSpec(a.domain, a.action, a.result_id, a.error, a.details) for a in body.acks]
    )
    return {"acks": [ack_json(a) for a in recorded]}
