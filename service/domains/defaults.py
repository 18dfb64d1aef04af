"""The domains a worker runs unless told otherwise: what `rok worker` composes.

The pool takes the domains it is given; this is the one place that says
which reference domains a deployment gets by default, for the programs that
build pools (the `rok worker` command and `python -m service.worker`).
"""

from __future__ import annotations

import os

from service.domains.incidents import IncidentsDomain
from service.domains.policies import PoliciesDomain
from service.domains.traces import TracesDomain
from service.worker import Domain


def reference_domains(policy_file: str | os.PathLike[str] | None = None) -> list[Domain]:
    """Policies first (the authorizer consults it before anything), then traces, incidents.

    The traces domain records through the process's tracer provider (OTEL_*:
    service.telemetry.install_tracing), so build the domains after installing it.
    """
    return [
        PoliciesDomain(policy_file),
        TracesDomain(),
        IncidentsDomain(),
    ]
