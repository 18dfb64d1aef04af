"""What the client sends and reads besides bodies: the run as JSON, a claim, the headers.

Kept apart from service.worker.client so the client is its methods alone; the
names are imported from there by the pool, the driver and the domains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from service.worker.api_errors import ApiError

Run = dict[str, Any]
"""A run as the API returns it (RunOut, or RunStateOut for a minimal answer)."""
# one ack as POST /runs/{id}/acks takes it: domain, action, result_id, error, details
AckBody = dict[str, Any]

TERMINAL = frozenset({"COMPLETED", "FAILED"})
LEASE_HEADER = "X-Lease-Token"
# RFC 7240: a move answers the run's state alone (RunStateOut), not the whole run
PREFER = "Prefer"
RETURN_MINIMAL = "return=minimal"


@dataclass(frozen=True)
class Claim:
    run: Run
    token: str
    expires_at: str

    @property
    def run_id(self) -> str:
        return str(self.run["id"])


def lease_header(token: str | None) -> dict[str, str] | None:
    return {LEASE_HEADER: token} if token is not None else None


def json_object(response: httpx.Response) -> dict[str, Any]:
    data = response.json()
    if not isinstance(data, dict):
        raise ApiError(response.status_code, f"expected a JSON object, got {data!r:.200}")
    return data
