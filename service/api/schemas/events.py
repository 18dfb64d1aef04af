"""Alerts as GET /events shows them: each event, what was sent, and its delivery state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from service.store.outbox import EventState, EventType


class EventBodyOut(BaseModel):
    """The JSON body every delivery of the event sends (signed as sent)."""

    type: EventType
    timestamp: datetime = Field(description="When the move that caused the event committed.")
    data: dict[str, Any] = Field(
        description="`run_id`, `tenant_id` and `phase` always; then what the type adds "
        "(run.failed: failed_in, reason, error; run.stale: stale_in, finalize_deadline, "
        "incident_id; governance.incomplete: status, missing, failed, strict; and the run's "
        "handler, attempt and max_attempts). Never the run's input, never a secret."
    )


class EventOut(BaseModel):
    id: str = Field(description="The `webhook-id` header of every delivery of this event.")
    type: EventType
    run_id: str
    tenant_id: str | None
    created_at: datetime
    state: EventState = Field(
        description="pending: to be (re)sent at next_attempt_at; delivered: every endpoint "
        "answered 2xx; failed: given up after ROK_WEBHOOK_MAX_ATTEMPTS attempts."
    )
    attempts: int = Field(description="Deliveries attempted so far.")
    next_attempt_at: datetime | None = Field(description="When a pending event is tried next.")
    last_error: str | None = Field(
        description="Why the last attempt failed; endpoints are named by their position in "
        "ROK_WEBHOOK_URLS, never by their URL."
    )
    delivered_at: datetime | None
    body: EventBodyOut


class EventPageOut(BaseModel):
    items: list[EventOut]
    next_cursor: str | None
