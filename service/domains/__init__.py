"""Reference governance domains: policies, traces (acked as `logs`) and incidents.

Each is a plugin of the WorkerPool (see `service.domains.base.Domain`) that
acks through POST /runs/{id}/acks; together they cover the default audit
contract. Write your own by subclassing `Domain`.
"""

from __future__ import annotations

import os

from service.domains.base import Domain, Muted, Wrapped, muted_by_input
from service.domains.incidents import IncidentsDomain
from service.domains.policies import PoliciesDomain, PolicyError, PolicySet
from service.domains.traces import TracesDomain

__all__ = [
    "Domain",
    "IncidentsDomain",
    "Muted",
    "PoliciesDomain",
    "PolicyError",
    "PolicySet",
    "TracesDomain",
    "Wrapped",
    "muted_by_input",
    "reference_domains",
]


def reference_domains(
    policy_file: str | os.PathLike[str] | None = None,
    otlp_endpoint: str | None = None,
) -> list[Domain]:
    """Policies first (the authorizer consults it before anything), then traces, incidents."""
    return [
        PoliciesDomain(policy_file),
        TracesDomain(otlp_endpoint),
        IncidentsDomain(),
    ]
