"""What the API client raises: the service's refusals, by status, and an unreachable service.

Callers tell them apart because each asks for a different reaction: a
`Conflict` means the run is no longer ours (stop working on it, never
retry), `RunMissing` that it is gone, another `ApiError` a bug in the
caller, and `ServiceUnavailable` that retrying ran out of time.
"""

from __future__ import annotations

import httpx


class ClientError(Exception):
    """Root of the errors the API client raises."""


class ApiError(ClientError):
    """The service refused the request (4xx other than 404/409): a bug in the caller."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class Conflict(ApiError):
    """409: the lease was fenced or the phase machine forbids the move. Never retried."""

    def __init__(self, detail: str, current_phase: str | None) -> None:
        super().__init__(409, detail)
        self.current_phase = current_phase


class RunMissing(ApiError):
    """404: no run with that id."""

    def __init__(self, detail: str) -> None:
        super().__init__(404, detail)


class ServiceUnavailable(ClientError):
    """The service could not be reached within `retry_timeout_s`."""


def raise_for_status(response: httpx.Response) -> None:
    """Raise the error a 4xx answer stands for (its problem document's detail as message)."""
    status = response.status_code
    if status < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = str(body.get("detail", response.text)) if isinstance(body, dict) else response.text
    if status == 409:
        current = body.get("current_phase") if isinstance(body, dict) else None
        raise Conflict(detail, current)
    if status == 404:
        raise RunMissing(detail)
    raise ApiError(status, detail)
