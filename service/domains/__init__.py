"""Reference governance domains: policies, traces (acked as `logs`) and incidents.

Each implements the WorkerPool's hook interface (`service.worker.Domain`)
and acks through POST /runs/{id}/acks; together they cover the default audit
contract. Write your own by subclassing `Domain`. The interface and its
wrappers are re-exported here, where code using the reference domains has
always found them.
"""

from __future__ import annotations

from service.domains.defaults import reference_domains
from service.domains.incidents import IncidentsDomain
from service.domains.policies import PoliciesDomain, PolicyError, PolicySet
from service.domains.traces import TracesDomain
from service.worker import Domain, Muted, Wrapped, muted_by_input

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
