"""Domain errors to HTTP status codes, in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

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
from service.kernel.rulebook import MoveRefused

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


NOT_JSON = "the body must be JSON, sent with Content-Type: application/json"


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
    if isinstance(exc, MoveRefused):  # which rule refused, and whether waiting may help
        body["rule"] = exc.rule
        body["verdict"] = exc.verdict
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(status_code=status_for(exc), content=body, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 naming each field and what is wrong with it.

    FastAPI's default echoes the offending input back, which fails to encode
    exactly when the input is the problem (NaN, an unpaired surrogate), turning
    a clear 422 into a 500. Location, message and type are what a person needs.
    A body FastAPI left as bytes was not sent as JSON: that is what it says then.
    """
    assert isinstance(exc, RequestValidationError)
    not_json = isinstance(exc.body, bytes)
    detail = [
        {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        if not (not_json and tuple(error.get("loc", ())) == ("body",))
        else {"loc": ["body"], "msg": NOT_JSON, "type": "content_type"}
        for error in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


async def _http_error(request: Request, exc: Exception) -> Response:
    """A body that cannot be decoded at all is a malformed body too: 422, not 400.

    FastAPI reports JSON that does not parse as a validation error, but bytes
    that are not UTF-8, or JSON nested past the parser's recursion limit, as
    `400 There was an error parsing the body` (an HTTPException raised from the
    decoding error). DESIGN section 4 answers every malformed body with 422, in
    the shape of the other validation errors. Every other HTTPException (an
    unknown path, a method the path does not have) is answered as FastAPI does.
    """
    assert isinstance(exc, HTTPException)
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None:
        return await http_exception_handler(request, exc)
    problem = (
        "is nested too deeply to parse"
        if isinstance(cause, RecursionError)
        else "cannot be read as JSON (it must be UTF-8 text)"
    )
    detail = [{"loc": ["body"], "msg": f"the body {problem}", "type": "json_invalid"}]
    return JSONResponse(status_code=422, content={"detail": detail})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RokError, _rok_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
