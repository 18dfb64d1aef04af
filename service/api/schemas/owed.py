"""The owed feed's answer: which live runs still owe a domain which actions."""

from __future__ import annotations

import enum
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from service.model.phases import RunPhase

MAX_OWED_WAIT_MS = 60_000
"""A long poll waits at most a minute: past it, proxies and clients time out anyway."""


class OwedPhase(enum.StrEnum):
    """The phases a run is listed in: it has not been judged yet."""

    CREATED = RunPhase.CREATED.value
    AUTHORIZED = RunPhase.AUTHORIZED.value
    EXECUTING = RunPhase.EXECUTING.value
    GOVERNANCE_CHECK = RunPhase.GOVERNANCE_CHECK.value


class OwedRunOut(BaseModel):
    run_id: UUID
    tenant_id: str | None
    handler: str | None
    phase: OwedPhase
    created_at: datetime
    actions: list[str] = Field(
        description="The domain's actions the run still waits for (sorted); ack each with "
        "POST /runs/{run_id}/acks."
    )


class OwedOut(BaseModel):
    items: list[OwedRunOut] = Field(
        description="Oldest run first; empty when none is owed (after wait_ms, if given)."
    )
