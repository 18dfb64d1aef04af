"""What the routers share: how they document their error answers, and how a move answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from service.api.auth import Principal
from service.api.deps import require_mover
from service.api.errors import (
    FORBIDDEN,
    NOT_FOUND,
    PHASE_CONFLICT,
    RATE_LIMITED,
    TOO_LARGE,
    UNAUTHORIZED,
    ProblemKind,
    problem,
)
from service.api.errors import IDEMPOTENCY_IN_PROGRESS as IDEMPOTENCY_IN_PROGRESS_KIND
from service.api.prefer import PREFERENCE_APPLIED, RETURN_MINIMAL
from service.api.presenters import RokJSONResponse, run_json, run_state_json
from service.api.schemas import Problem, ValidationProblem
from service.authority import Authority
from service.kernel import RunOrchestrationKernel
from service.kernel.spec import Caller

Responses = dict[int | str, dict[str, Any]]
"""The `responses=` of a route decorator."""

# -- How a route documents its error answers (the convention every router follows) ------
#
# `responses=problems(...)` lists every status the operation can answer, and only
# those, each with the problem schema (service.api.schemas.problems) and an example:
#   401, 403, 429       every operation that takes a key (PrincipalDep): no key, a
#                       missing scope, ROK_RATE_LIMIT;
#   422                 every operation with a path id, a query, a header or a body
#                       to validate (every POST: its Idempotency-Key header);
#   404                 every operation with a {run_id} in its path;
#   409, 413            every POST (an Idempotency-Key still in progress; the body
#                       limit), and `conflict=` says what else a 409 means there.
# The presets below are the common sets. A public operation (no PrincipalDep:
# health, readiness, metrics) documents none of these, and the schema marks it
# `security: []` by itself (service.api.openapi). Give every operation an
# `operation_id` (verb_noun: `create_run`), a `summary` and a `description`, and
# its router a tag of service.api.openapi.TAGS. The error bodies themselves are
# built only in service.api.errors: raise a RokError, never return an error dict.

IDEMPOTENCY_IN_PROGRESS = "a request with the same Idempotency-Key is still running (retry later)"


def _example(kind: ProblemKind, detail: str, instance: str, **extra: Any) -> dict[str, Any]:
    return {"example": problem(kind, detail, instance, **extra)}


_RUN_PATH = "/runs/b9d1540a-9a04-4676-b249-83d6b461aa91/begin-execution"

_PROBLEMS: Responses = {
    401: {
        "model": Problem,
        "description": "No API key, or an unknown or revoked one (`unauthorized`).",
        "headers": {
            "WWW-Authenticate": {
                "description": '`Bearer`, with `error="invalid_token"` for a key it refused.',
                "required": True,
                "schema": {"type": "string"},
            }
        },
        "content": {
            "application/json": _example(
                UNAUTHORIZED, "the API key is unknown or revoked", _RUN_PATH
            )
        },
    },
    403: {
        "model": Problem,
        "description": "The key lacks the scope or the tenant this request needs; with "
        "ROK_AUTH=off, the request was not addressed to this machine (`forbidden`).",
        "content": {
            "application/json": _example(
                FORBIDDEN, "this key lacks the scope this request needs: runs:write", _RUN_PATH
            )
        },
    },
    404: {
        "model": Problem,
        "description": "No run with that id in the key's tenant (`not_found`).",
        "content": {
            "application/json": _example(
                NOT_FOUND, "run b9d1540a-9a04-4676-b249-83d6b461aa91 does not exist", _RUN_PATH
            )
        },
    },
    413: {
        "model": Problem,
        "description": "The body is larger than ROK_MAX_BODY_BYTES (`too_large`).",
        "content": {
            "application/json": _example(
                TOO_LARGE, "request body is larger than 1048576 bytes (ROK_MAX_BODY_BYTES)", "/runs"
            )
        },
    },
    422: {
        "model": ValidationProblem,
        "description": "The request cannot be done as sent (`invalid_request`; "
        "`idempotency_conflict` for a key reused with another request): `errors` names "
        "each field that fails validation, the body that is not JSON, or (`loc: []`) "
        "the request refused as a whole.",
        "content": {
            "application/json": {"example": ValidationProblem.model_json_schema()["examples"][0]}
        },
    },
    429: {
        "model": Problem,
        "description": "The key sent more than ROK_RATE_LIMIT allows (`rate_limited`).",
        "headers": {
            "Retry-After": {
                "description": "Seconds until a request of this key would be allowed.",
                "required": True,
                "schema": {"type": "integer"},
            }
        },
        "content": {
            "application/json": _example(
                RATE_LIMITED,
                "rate limit of 100/second per key exceeded (ROK_RATE_LIMIT); retry in 1 s",
                "/runs",
            )
        },
    },
}


_BUSY_EXAMPLE = _example(
    IDEMPOTENCY_IN_PROGRESS_KIND,
    "the request with Idempotency-Key 'k-1' is still in progress; retry later",
    "/runs",
)
_CONFLICT_EXAMPLE = _example(
    PHASE_CONFLICT,
    "run b9d1540a-9a04-4676-b249-83d6b461aa91 is in phase CREATED and cannot move to EXECUTING",
    _RUN_PATH,
    current_phase="CREATED",
    requested_phase="EXECUTING",
)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def problems(
    *statuses: int, conflict: str | None = None, conflict_example: dict[str, Any] | None = None
) -> Responses:
    """The error answers of one operation, each with the problem schema and an example.

    `conflict`: what a 409 means here besides an Idempotency-Key still in progress
    (every POST can answer that one); `conflict_example`: a problem body showing it
    (a phase conflict by default)."""
    responses: Responses = {}
    for status in statuses:
        if status != 409:
            responses[status] = _PROBLEMS[status]
            continue
        reasons = [reason for reason in (conflict, IDEMPOTENCY_IN_PROGRESS) if reason]
        responses[409] = {
            "model": Problem,
            "description": _sentence("; or ".join(reasons))
            + " (`idempotency_in_progress`, with `Retry-After`).",
            "content": {
                "application/json": (
                    {"example": conflict_example}
                    if conflict_example
                    else _CONFLICT_EXAMPLE
                    if conflict
                    else _BUSY_EXAMPLE
                )
            },
        }
    return responses


PHASE_OR_LEASE = (
    "the phase machine forbids this move (`phase_conflict`: `current_phase` and "
    "`requested_phase` say why), or the lease does (`lease_conflict`: no X-Lease-Token "
    "on a leased run, a stale one, or another worker's)"
)

READ_ONE = problems(401, 403, 404, 422, 429)
"""A GET of one run (or of something of one run)."""
READ_MANY = problems(401, 403, 422, 429)
"""A GET of a list."""
POST_NEW = problems(401, 403, 409, 413, 422, 429)
"""A POST with no run in its path (create, claim)."""
POST_ON_RUN = problems(401, 403, 404, 409, 413, 422, 429)
"""A POST on one run that no phase or lease refuses (an ack)."""
MOVE = problems(401, 403, 404, 409, 413, 422, 429, conflict=PHASE_OR_LEASE)
"""A lifecycle move, fenced by the phase machine and the lease."""

Move = Callable[[RunOrchestrationKernel], object]
"""One lifecycle move: a call on the run's kernel, which commits it."""


def caller(principal: Principal) -> Caller:
    """The kernel's view of the principal: the actor it records, the tenant it is confined to."""
    return Caller(principal.key_id, principal.tenant_scope)


def mover(
    authority: Authority,
    run_id: UUID,
    lease_token: str | None,
    principal: Principal,
    minimal: bool = False,
) -> RunOrchestrationKernel:
    """A kernel for one move of the run by `principal`, fenced by the lease token.

    Unless the answer is to be `minimal`, the kernel keeps the run as the move
    committed it (read inside the move's transaction), for the answer (moved_run).
    """
    require_mover(principal, lease_token)
    return authority.kernel(
        str(run_id), lease_token, keep_records=not minimal, caller=caller(principal)
    )


def moved_run(
    authority: Authority, kernel: RunOrchestrationKernel, minimal: bool = False
) -> dict[str, Any]:
    """The run as the kernel's last move committed it (no second read): the whole run,
    or with `minimal` its state alone (RunStateOut)."""
    if minimal:
        row = kernel.last_row
        assert row is not None, "a kernel answers after a committed move"
        return run_state_json(row)
    record = kernel.last_record
    assert record is not None, "a kernel from mover() answers after a committed move"
    return run_json(record, authority.clock())


def run_answer(content: dict[str, Any], minimal: bool, status_code: int = 200) -> RokJSONResponse:
    """The answer of a move; a minimal one says so (RFC 7240 Preference-Applied)."""
    headers = {PREFERENCE_APPLIED: RETURN_MINIMAL} if minimal else None
    return RokJSONResponse(content, status_code=status_code, headers=headers)


def answer_move(
    authority: Authority,
    run_id: UUID,
    lease_token: str | None,
    principal: Principal,
    move: Move,
    minimal: bool = False,
) -> RokJSONResponse:
    """Make one move on the run and answer the run as the move committed it."""
    kernel = mover(authority, run_id, lease_token, principal, minimal)
    move(kernel)
    return run_answer(moved_run(authority, kernel, minimal), minimal)
