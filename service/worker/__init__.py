"""Workers: the WorkerPool that drives runs over the rok REST API, and what handlers see.

from service.worker import WorkerPool

def summarize(ctx):
    ctx.step("read", doc=ctx.input["doc"])
    ctx.charge(0.02)
    return "..."

WorkerPool("http://127.0.0.1:8000", {"summarize": summarize}, concurrency=8).run()
"""

from __future__ import annotations

from service.worker.authorizer import GRANT, Authorizer, Decision
from service.worker.client import Claim, Conflict, RokClient
from service.worker.context import Limits, RunContext, Step
from service.worker.outcome import (
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

__all__ = [
    "GRANT",
    "Authorizer",
    "Claim",
    "Conflict",
    "Decision",
    "LeaseRevoked",
    "Limits",
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
]
