"""What the /runs routers share: the errors they document and how a move answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from service.api.auth import Principal
from service.api.deps import require_mover
from service.api.presenters import RokJSONResponse, run_json
from service.api.schemas import ErrorOut, InvalidOut
from service.authority import Authority
from service.kernel import RunOrchestrationKernel
from service.kernel.spec import Caller

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorOut,
        "description": "No API key, or an unknown or revoked one.",
        "headers": {
            "WWW-Authenticate": {
                "description": '`Bearer`, with `error="invalid_token"` for a key it refused.',
                "required": True,
                "schema": {"type": "string"},
            }
        },
    },
    403: {"model": ErrorOut, "description": "The key lacks the scope this request needs."},
    404: {"model": ErrorOut, "description": "No run with that id (in the key's tenant)."},
    409: {
        "model": ErrorOut,
        "description": "The phase machine or the lease forbids this move, or a request with "
        "the same Idempotency-Key is still running.",
    },
    413: {"model": ErrorOut, "description": "The body is larger than ROK_MAX_BODY_BYTES."},
    422: {
        "model": InvalidOut,
        "description": "The request cannot be done as sent: a field that fails validation, a "
        "body that is not JSON, or a refusal of the request as a whole (`detail` says which).",
    },
    429: {
        "model": ErrorOut,
        "description": "The key sent more than ROK_RATE_LIMIT allows.",
        "headers": {
            "Retry-After": {
                "description": "Seconds until a request of this key would be allowed.",
                "required": True,
                "schema": {"type": "integer"},
            }
        },
    },
}
"""Every refusal a POST on a run can answer; the other sets are what fewer routes can."""
NOT_FOUND: dict[int | str, dict[str, Any]] = {k: ERRORS[k] for k in (401, 403, 404, 422, 429)}
"""What a read of one run can answer."""
AUTH: dict[int | str, dict[str, Any]] = {k: ERRORS[k] for k in (401, 403, 422, 429)}
"""What every operation that needs a key can answer."""
POSTED: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorOut,
        "description": "A request with the same Idempotency-Key is still running.",
    },
    413: ERRORS[413],
}
"""What every POST can answer besides: its Idempotency-Key in progress, the body limit."""

Move = Callable[[RunOrchestrationKernel], object]
"""One lifecycle move: a call on the run's kernel, which commits it."""


def caller(principal: Principal) -> Caller:
    """The kernel's view of the principal: the actor it records, the tenant it is confined to."""
    return Caller(principal.key_id, principal.tenant_scope)


def mover(
    authority: Authority, run_id: UUID, lease_token: str | None, principal: Principal
) -> RunOrchestrationKernel:
    """A kernel for one move of the run by `principal`, fenced by the lease token,
    that keeps the run as the move committed it, for the answer (moved_run)."""
    require_mover(principal, lease_token)
    return authority.kernel(str(run_id), lease_token, keep_records=True, caller=caller(principal))


def moved_run(authority: Authority, kernel: RunOrchestrationKernel) -> dict[str, Any]:
    """The run as the kernel's last move committed it (no second read)."""
    record = kernel.last_record
    assert record is not None, "a kernel from mover() answers after a committed move"
    return run_json(record, authority.clock())


def answer_move(
    authority: Authority,
    run_id: UUID,
    lease_token: str | None,
    principal: Principal,
    move: Move,
) -> RokJSONResponse:
    """Make one move on the run and answer the run as the move committed it."""
    kernel = mover(authority, run_id, lease_token, principal)
    move(kernel)
    return RokJSONResponse(moved_run(authority, kernel))
