"""Domain errors to HTTP status codes, in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service.errors import (
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    LeaseLost,
    PhaseTransitionError,
    RokError,
    RunAlreadyExists,
    RunNotFound,
    Unauthorized,
)

STATUS_BY_ERROR: dict[type[RokError], int] = {
    RunNotFound: 404,
    RunAlreadyExists: 409,
    PhaseTransitionError: 409,
    LeaseLost: 409,
    IdempotencyConflict: 422,
    InvalidRequest: 422,
    Unauthorized: 401,
    Forbidden: 403,
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
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(status_code=status_for(exc), content=body, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 naming each field and what is wrong with it.

    FastAPI's default echoes the offending input back, which fails to encode
    exactly when the input is the problem (NaN, an unpaired surrogate), turning
    a clear 422 into a 500. Location, message and type are what a person needs.
    """
    assert isinstance(exc, RequestValidationError)
    detail = [
        {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RokError, _rok_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
