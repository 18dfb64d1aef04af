"""What the API client raises: the service's refusals, by status, and an unreachable service.

Callers tell them apart because each asks for a different reaction: a
`Conflict` means the run is no longer ours (stop working on it, never
retry), `RunMissing` that it is gone, another `ApiError` a bug in the
caller, and `ServiceUnavailable` that retrying ran out of time.
"""

from __future__ import annotations

from typing import Any

import httpx


class ClientError(Exception):
    """Root of the errors the API client raises."""


class ApiError(ClientError):
    """The service refused the request (4xx other than 404/409): a bug in the caller.

    `code` is the problem document's stable name of the refusal (`invalid_request`,
    `forbidden`, `rate_limited`, ...; None from a body that is no problem document);
    `errors` its field errors on a 422 (`[{loc, msg, type}]`)."""

    def __init__(
        self,
        status: int,
        detail: str,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {detail}" + (f" ({code})" if code else ""))
        self.status = status
        self.detail = detail
        self.code = code
        self.errors = errors or []


class Conflict(ApiError):
    """409: the lease was fenced (`lease_conflict`) or the phase machine forbids the move
    (`phase_conflict`, with the run's `current_phase`). Never retried."""

    def __init__(self, detail: str, current_phase: str | None, code: str | None = None) -> None:
        super().__init__(409, detail, code)
        self.current_phase = current_phase


class RunMissing(ApiError):
    """404: no run with that id."""

    def __init__(self, detail: str, code: str | None = None) -> None:
        super().__init__(404, detail, code)


class ServiceUnavailable(ClientError):
    """The service could not be reached within `retry_timeout_s`."""


def raise_for_status(response: httpx.Response) -> None:
    """Raise the error a 4xx answer stands for, read from its problem document
    (`application/problem+json`: detail, code, current_phase, errors)."""
    status = response.status_code
    if status < 400:
        return
    problem = _problem(response)
    detail = _text(problem.get("detail")) or response.text
    code = problem.get("code") if isinstance(problem.get("code"), str) else None
    if status == 409:
        current = problem.get("current_phase")
        raise Conflict(detail, current if isinstance(current, str) else None, code)
    if status == 404:
        raise RunMissing(detail, code)
    errors = problem.get("errors")
    field_errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    raise ApiError(status, detail, code, field_errors)


def _problem(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or {} (a proxy's HTML page, an empty body)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _text(detail: Any) -> str:
    """`detail` is a sentence; a service before problem documents sent a list of field
    errors for a 422, joined here as one."""
    if isinstance(detail, list):
        return "; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in detail)
    return "" if detail is None else str(detail)
