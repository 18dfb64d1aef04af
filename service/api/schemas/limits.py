"""Concurrency limits: the body of PUT /limits/{key} and what /limits answers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from service.api.schemas.base import StrictModel
from service.store.limits import MAX_LIMIT


class LimitIn(StrictModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"max_concurrent": 4}]}
    )

    max_concurrent: StrictInt = Field(
        ge=0,
        le=MAX_LIMIT,
        description="How many runs holding the key may be leased at once; 0 holds every "
        "claim of them. Runs leased already keep their slots when it is lowered.",
    )


class LimitOut(BaseModel):
    key: str
    max_concurrent: int | None = Field(description="The limit set on the key; null: none set.")
    effective_max: int | None = Field(
        description="What claims obey: max_concurrent, else ROK_TENANT_CONCURRENCY for a "
        "tenant's key tenant:<tenant_id>; null: no limit."
    )
    in_use: int = Field(description="Runs holding the key that a worker leases now.")


class LimitsOut(BaseModel):
    items: list[LimitOut]
