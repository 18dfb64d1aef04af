"""Every error answer rok gives, built in one place: RFC 9457 problem details.

An error body is `application/problem+json`:
`{type, title, status, detail, instance, code}`. `code` is the stable,
machine-readable name of the error class (`ProblemKind`, one per class);
`type` is the same name as a URI (`urn:rok:problem:<code>`); `title` a fixed
phrase per class; `detail` always one sentence about this occurrence;
`instance` the request path. Extra members: `current_phase` and
`requested_phase` on a phase conflict; `errors: [{loc, msg, type}]` on every
422, naming each field that was wrong (`loc: []` when the request as a whole
was refused).

The routes raise RokErrors (`STATUS_BY_ERROR` picks their kind); FastAPI's own
errors (validation, unknown paths) are turned into problems here too; the
gates in front of the app (auth, body limit, rate limit, Idempotency-Key)
answer with `send_problem`. Nothing else writes an error body.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import Scope, Send

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

PROBLEM_MEDIA_TYPE = "application/problem+json"
NOT_JSON = "the body must be JSON, sent with Content-Type: application/json"


@dataclass(frozen=True)
class ProblemKind:
    """One class of error: its stable `code`, its HTTP status and its fixed title."""

    code: str
    status: int
    title: str

    @property
    def type(self) -> str:
        return f"urn:rok:problem:{self.code}"


UNAUTHORIZED = ProblemKind("unauthorized", 401, "No valid API key")
FORBIDDEN = ProblemKind("forbidden", 403, "Not allowed for this key")
NOT_FOUND = ProblemKind("not_found", 404, "Not found")
METHOD_NOT_ALLOWED = ProblemKind("method_not_allowed", 405, "Method not allowed")
RUN_EXISTS = ProblemKind("run_exists", 409, "The run already exists")
PHASE_CONFLICT = ProblemKind("phase_conflict", 409, "The phase machine forbids this move")
LEASE_CONFLICT = ProblemKind("lease_conflict", 409, "The lease does not allow this move")
IDEMPOTENCY_IN_PROGRESS = ProblemKind(
    "idempotency_in_progress", 409, "The request with this Idempotency-Key is still running"
)
TOO_LARGE = ProblemKind("too_large", 413, "Request body too large")
INVALID_REQUEST = ProblemKind("invalid_request", 422, "The request is invalid")
IDEMPOTENCY_CONFLICT = ProblemKind(
    "idempotency_conflict", 422, "The idempotency key was used with another request"
)
RATE_LIMITED = ProblemKind("rate_limited", 429, "Rate limit exceeded")
INTERNAL_ERROR = ProblemKind("internal_error", 500, "Internal error")

KINDS: tuple[ProblemKind, ...] = (
    UNAUTHORIZED,
    FORBIDDEN,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    RUN_EXISTS,
    PHASE_CONFLICT,
    LEASE_CONFLICT,
    IDEMPOTENCY_IN_PROGRESS,
    TOO_LARGE,
    INVALID_REQUEST,
    IDEMPOTENCY_CONFLICT,
    RATE_LIMITED,
    INTERNAL_ERROR,
)
"""Every code rok answers; the OpenAPI lists them (schemas.problems)."""

HTTP_KINDS = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED}
"""The refusals FastAPI and Starlette raise themselves (an unknown path, a wrong method)."""

KIND_BY_ERROR: dict[type[RokError], ProblemKind] = {
    RunNotFound: NOT_FOUND,
    RunAlreadyExists: RUN_EXISTS,
    PhaseTransitionError: PHASE_CONFLICT,
    LeaseLost: LEASE_CONFLICT,
    IdempotencyConflict: IDEMPOTENCY_CONFLICT,
    InvalidRequest: INVALID_REQUEST,
    Unauthorized: UNAUTHORIZED,
    Forbidden: FORBIDDEN,
}


def kind_for(exc: RokError) -> ProblemKind:
    for cls in type(exc).__mro__:
        if cls in KIND_BY_ERROR:
            return KIND_BY_ERROR[cls]
    return INTERNAL_ERROR


def status_for(exc: RokError) -> int:
    return kind_for(exc).status


FieldError = dict[str, Any]
"""`{loc, msg, type}`: one thing wrong with a request, where and what."""


def field_error(loc: Sequence[str | int], msg: str, type_: str) -> FieldError:
    return {"loc": list(loc), "msg": msg, "type": type_}


def problem(
    kind: ProblemKind,
    detail: str,
    instance: str,
    errors: Sequence[FieldError] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The one builder of an error body. A 422 always names what was wrong (`errors`)."""
    body: dict[str, Any] = {
        "type": kind.type,
        "title": kind.title,
        "status": kind.status,
        "detail": detail,
        "instance": instance,
        "code": kind.code,
        **extra,
    }
    if kind.status == 422:
        body["errors"] = list(errors) if errors else [field_error([], detail, kind.code)]
    return body


def _challenge(kind: ProblemKind, error: str | None) -> dict[str, str]:
    if kind.status != 401:
        return {}
    return {"WWW-Authenticate": "Bearer" if error is None else f'Bearer error="{error}"'}


def problem_response(
    kind: ProblemKind,
    detail: str,
    instance: str,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        problem(kind, detail, instance, errors, **extra),
        status_code=kind.status,
        headers={**_challenge(kind, None), **(headers or {})},
        media_type=PROBLEM_MEDIA_TYPE,
    )


async def send_problem(
    scope: Scope,
    send: Send,
    kind: ProblemKind,
    detail: str,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[FieldError] | None = None,
    challenge_error: str | None = None,
) -> None:
    """A problem answered by a gate before the app ran (pure ASGI)."""
    body = json.dumps(
        problem(kind, detail, scope.get("path", ""), errors),
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    merged = {**_challenge(kind, challenge_error), **(headers or {})}
    raw = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in merged.items()),
    ]
    await send({"type": "http.response.start", "status": kind.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# -- the handlers ------------------------------------------------------------------------


async def _rok_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RokError)
    extra: dict[str, Any] = {}
    errors: list[FieldError] | None = None
    if isinstance(exc, PhaseTransitionError):
        extra = {"current_phase": exc.current, "requested_phase": exc.requested}
        if isinstance(exc, MoveRefused):  # which rule refused, and whether waiting may help
            extra.update(rule=exc.rule, verdict=exc.verdict)
    elif isinstance(exc, IdempotencyConflict):
        errors = [field_error(["body", "idempotency_key"], str(exc), IDEMPOTENCY_CONFLICT.code)]
    elif isinstance(exc, InvalidRequest):
        errors = [field_error(exc.loc, str(exc), INVALID_REQUEST.code)]
    return problem_response(kind_for(exc), str(exc), request.url.path, errors, **extra)


def _describe(errors: Iterable[FieldError]) -> str:
    """One sentence for `detail`: each place and what is wrong there."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in errors]
    return "the request is invalid: " + "; ".join(parts)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each field and what is wrong with it.

    FastAPI's default echoes the offending input back, which fails to encode
    exactly when the input is the problem (NaN, an unpaired surrogate), turning
    a clear 422 into a 500. Location, message and type are what a person needs.
    A body FastAPI left as bytes was not sent as JSON: that is what it says then.
    """
    assert isinstance(exc, RequestValidationError)
    not_json = isinstance(exc.body, bytes)
    errors = [
        field_error(error.get("loc", ()), str(error.get("msg", "")), str(error.get("type", "")))
        if not (not_json and tuple(error.get("loc", ())) == ("body",))
        else field_error(["body"], NOT_JSON, "content_type")
        for error in exc.errors()
    ]
    return problem_response(INVALID_REQUEST, _describe(errors), request.url.path, errors)


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's and Starlette's own refusals (unknown path, wrong method) as problems.

    A body that cannot be decoded at all is a malformed body too: 422, not 400.
    FastAPI reports JSON that does not parse as a validation error, but bytes
    that are not UTF-8, or JSON nested past the parser's recursion limit, as
    `400 There was an error parsing the body` (an HTTPException raised from the
    decoding error). DESIGN section 4 answers every malformed body with 422, in
    the shape of the other validation errors.
    """
    assert isinstance(exc, HTTPException)
    path = request.url.path
    cause = exc.__cause__
    if exc.status_code == 400 and cause is not None:
        problem_text = (
            "is nested too deeply to parse"
            if isinstance(cause, RecursionError)
            else "cannot be read as JSON (it must be UTF-8 text)"
        )
        errors = [field_error(["body"], f"the body {problem_text}", "json_invalid")]
        return problem_response(INVALID_REQUEST, _describe(errors), path, errors)
    kind = HTTP_KINDS.get(exc.status_code) or ProblemKind(
        f"http_{exc.status_code}", exc.status_code, str(exc.detail)
    )
    detail = str(exc.detail)
    if exc.status_code == 404:
        detail = f"no endpoint at {path}"
    elif exc.status_code == 405:
        detail = f"{path} does not take {request.method}"
    return problem_response(kind, detail, path, headers=exc.headers)


async def _internal_error(request: Request, _exc: Exception) -> JSONResponse:
    # the exception is logged by the server; the answer names no internals
    return problem_response(INTERNAL_ERROR, "the service failed on this request", request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RokError, _rok_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
