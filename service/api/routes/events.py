"""Events: the alerts of the outbox (DESIGN section 10) and where their delivery stands."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import AuthorityDep, PrincipalDep, require, require_tenant
from service.api.routes.common import READ_MANY
from service.api.schemas import EventOut, EventPageOut, check_storable
from service.errors import InvalidRequest
from service.store.keys import RUNS_READ
from service.store.outbox import Event, EventFilter, EventState, EventType, OutboxStore

router = APIRouter(prefix="/events", tags=["operators"])


def event_out(event: Event) -> EventOut:
    return EventOut.model_validate(
        {
            "id": event.id,
            "type": event.type,
            "run_id": event.run_id,
            "tenant_id": event.tenant_id,
            "created_at": event.created_at,
            "state": event.state,
            "attempts": event.attempts,
            "next_attempt_at": event.next_attempt_at,
            "last_error": event.last_error,
            "delivered_at": event.delivered_at,
            "body": event.payload,
        }
    )


@router.get(
    "",
    response_model=EventPageOut,
    responses=READ_MANY,
    operation_id="list_events",
    summary="List alerts (run.failed, run.stale, governance.incomplete), newest first, "
    "with their webhook delivery state",
    description="Events are recorded while ROK_WEBHOOK_URLS is set. An admin key sees "
    "every tenant's (filter with tenant_id); a tenant's key sees its own.",
)
def list_events(
    authority: AuthorityDep,
    principal: PrincipalDep,
    type: EventType | None = None,
    state: EventState | None = None,
    run_id: str | None = None,
    tenant_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> EventPageOut:
    for name, value in (("run_id", run_id), ("tenant_id", tenant_id), ("cursor", cursor)):
        if value is not None:
            try:
                check_storable(value, name)
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from None
    require(principal, RUNS_READ)
    filters = EventFilter(
        tenant_id=require_tenant(principal, tenant_id), run_id=run_id, type=type, state=state
    )
    found, next_cursor = OutboxStore(authority.database).list(filters, limit, cursor)
    return EventPageOut(items=[event_out(e) for e in found], next_cursor=next_cursor)
