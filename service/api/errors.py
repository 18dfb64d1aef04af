"""Domain errors to HTTP status codes, in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service.errors import (
    IdempotencyConflict,
    InvalidRequest,
    LeaseLost,
    PhaseTransitionError,
    RokError,
    RunAlreadyExists,
    RunNotFound,
)

STATUS_BY_ERROR: dict[type[RokError], int] = {
    RunNotFound: 404,
    RunAlreadyExists: 409,
    PhaseTransitionError: 409,
    LeaseLost: 409,
    IdempotencyConflict: 422,
    InvalidRequest: 422,
}


def status_for(exc: RokError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


async def _rok_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RokError)
    body: dict[str, object] = {"detail": str(exc)}
    if isinstance(exc, PhaseTransitionError):
        body["current_phase"] = exc.current
        body["requested_phase"] = exc.requested
    return JSONResponse(status_code=status_for(exc), content=body)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RokError, _rok_error)
