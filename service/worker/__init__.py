"""Workers: the WorkerPool that drives runs over the rok REST API, and what handlers see.

from service.worker import WorkerPool

def summarize(ctx):
    ctx.step("read", doc=ctx.input["doc"])
    ctx.charge(0.02)
    return "..."

WorkerPool("http://127.0.0.1:8000", {"summarize": summarize}, concurrency=8).run()

Domains plug into the pool through the hook interface named here (`Domain`,
`Decision`, `AckChannel`, the wrappers); the reference ones are in
service.domains, which depends on this package and never the other way.
"""

from __future__ import annotations

from service.worker.acks import AckChannel
from service.worker.api_errors import Conflict
from service.worker.authorizer import Authorizer
from service.worker.client import RokClient
from service.worker.context import Limits, RunContext, Step
from service.worker.hooks import (
    APPROVAL_REQUIRED,
    GRANT,
    Decision,
    Domain,
    Muted,
    Wrapped,
    muted_by_input,
)
from service.worker.outcome import (
    CancelRequested,
    LeaseRevoked,
    Outcome,
    OutcomeKind,
    PolicyViolation,
    RunCancelled,
    RunTimedOut,
    WorkerShuttingDown,
)
from service.worker.pool import WorkerPool
from service.worker.results import RunResult
from service.worker.wire import Claim

__all__ = [
    "APPROVAL_REQUIRED",
    "GRANT",
    "AckChannel",
    "Authorizer",
    "CancelRequested",
    "Claim",
    "Conflict",
    "Decision",
    "Domain",
    "LeaseRevoked",
    "Limits",
    "Muted",
    "Outcome",
    "OutcomeKind",
    "PolicyViolation",
    "RokClient",
    "RunCancelled",
    "RunContext",
    "RunResult",
    "RunTimedOut",
    "Step",
    "WorkerPool",
    "WorkerShuttingDown",
    "Wrapped",
    "muted_by_input",
]
