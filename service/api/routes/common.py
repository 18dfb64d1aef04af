"""What the /runs routers share: the errors they document and how a move answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from service.api.auth import Principal
from service.api.deps import require_mover
from service.api.presenters import RokJSONResponse, run_json
from service.api.schemas import ErrorOut
from service.authority import Authority
from service.kernel import RunOrchestrationKernel
from service.kernel.spec import Caller

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No API key, or an unknown or revoked one."},
    403: {"model": ErrorOut, "description": "The key lacks the scope this request needs."},
    404: {"model": ErrorOut, "description": "No run with that id (in the key's tenant)."},
    409: {"model": ErrorOut, "description": "The phase machine or the lease forbids this move."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {k: ERRORS[k] for k in (401, 403, 404)}
AUTH: dict[int | str, dict[str, Any]] = {k: ERRORS[k] for k in (401, 403)}

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
