"""Error bodies as the contract states them: RFC 9457 problem details (service.api.errors)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from service.model.phases import RunPhase

CODES = (
    "`unauthorized` (401), `forbidden` (403), `not_found` (404), `run_exists`, "
    "`phase_conflict`, `lease_conflict`, `idempotency_in_progress` (409), `too_large` (413), "
    "`invalid_request`, `idempotency_conflict` (422), `rate_limited` (429), "
    "`internal_error` (500). New codes may be added; a code never changes meaning."
)


class Problem(BaseModel):
    """An error answer (`application/problem+json`, RFC 9457)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:rok:problem:phase_conflict",
                    "title": "The phase machine forbids this move",
                    "status": 409,
                    "detail": "run 0b7e… is in phase CREATED and cannot move to EXECUTING",
                    "instance": "/runs/0b7e…/begin-execution",
                    "code": "phase_conflict",
                    "current_phase": "CREATED",
                    "requested_phase": "EXECUTING",
                }
            ]
        }
    )

    type: str = Field(
        description="The error class as a URI: `urn:rok:problem:` and the code.",
        json_schema_extra={"format": "uri"},
    )
    title: str = Field(description="A fixed short phrase per error class.")
    status: int = Field(description="The HTTP status of the answer.", ge=100, le=599)
    detail: str = Field(description="What went wrong with this request, in one sentence.")
    instance: str = Field(description="The path of the request that was refused.")
    code: str = Field(description=f"The error class, stable and machine-readable: {CODES}")
    current_phase: RunPhase | SkipJsonSchema[None] = Field(
        default=None, description="`phase_conflict` only: the phase the run is in."
    )
    requested_phase: RunPhase | SkipJsonSchema[None] = Field(
        default=None, description="`phase_conflict` only: the phase the move asked for."
    )
    rule: str | SkipJsonSchema[None] = Field(
        default=None,
        description="`phase_conflict` from a rule only: the rule that refused the move "
        "(authorization, approval, cancellation, governance, or one the deployment added).",
    )
    verdict: Literal["reject", "wait"] | SkipJsonSchema[None] = Field(
        default=None,
        description="With `rule`: `wait` when the same move may be accepted later "
        "(an approval pending), `reject` when it will not be as the run stands.",
    )


class FieldError(BaseModel):
    """One thing wrong with a request: where, and what."""

    loc: list[str | int] = Field(
        description="Where: `body`, `path`, `query` or `header`, then the field's path; "
        "empty when the request as a whole was refused."
    )
    msg: str
    type: str = Field(description="The kind of error (pydantic's error type, or a rok code).")


class ValidationProblem(Problem):
    """A 422: a field that fails validation, a body that is not JSON, or a request the
    service refuses as a whole (a limit, a reused idempotency key). `errors` names each."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:rok:problem:invalid_request",
                    "title": "The request is invalid",
                    "status": 422,
                    "detail": "the request is invalid: body.run_timeout_ms: Input should be "
                    "greater than or equal to 1",
                    "instance": "/runs",
                    "code": "invalid_request",
                    "errors": [
                        {
                            "loc": ["body", "run_timeout_ms"],
                            "msg": "Input should be greater than or equal to 1",
                            "type": "greater_than_equal",
                        }
                    ],
                }
            ]
        }
    )

    errors: list[FieldError] = Field(min_length=1)
