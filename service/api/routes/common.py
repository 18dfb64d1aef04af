"""What the /runs routers share: the errors they document and how a move answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from service.api.presenters import RokJSONResponse, run_json
from service.api.schemas import ErrorOut
from service.authority import Authority
from service.kernel import RunOrchestrationKernel

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No run with that id."},
    409: {"model": ErrorOut, "description": "The phase machine or the lease forbids this move."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: ERRORS[404]}

Move = Callable[[RunOrchestrationKernel], object]
"""One lifecycle move: a call on the run's kernel, which commits it."""


def mover(authority: Authority, run_id: UUID, lease_token: str | None) -> RunOrchestrationKernel:
    """A kernel for one move of the run, fenced by the lease token, that keeps the
    run as the move committed it, for the answer (moved_run)."""
    return authority.kernel(str(run_id), lease_token, keep_records=True)


def moved_run(authority: Authority, kernel: RunOrchestrationKernel) -> dict[str, Any]:
    """The run as the kernel's last move committed it (no second read)."""
    record = kernel.last_record
    assert record is not None, "a kernel from mover() answers after a committed move"
    return run_json(record, authority.clock())


def answer_move(
    authority: Authority, run_id: UUID, lease_token: str | None, move: Move
) -> RokJSONResponse:
    """Make one move on the run and answer the run as the move committed it."""
    kernel = mover(authority, run_id, lease_token)
    move(kernel)
    return RokJSONResponse(moved_run(authority, kernel))
