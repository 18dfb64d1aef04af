"""The kernel: the authority that drives one run through its phases. No HTTP.

The phase table and the audit contract are plain values in service.model;
their names stay importable from here, where the seed had them.
"""

from service.errors import GovernanceCheckError, PhaseTransitionError
from service.kernel.kernel import RunOrchestrationKernel, create_rok
from service.kernel.spec import AckSpec, GovernanceOutcome, RunSpec
from service.model.audit import (
    AuditExpectation,
    DomainAck,
    ExpectationStatus,
    ReconciliationResult,
    ReconciliationStatus,
    reconcile,
)
from service.model.phases import (
    TERMINAL_PHASES,
    VALID_TRANSITIONS,
    PhaseTransition,
    RunPhase,
)

__all__ = [
    "TERMINAL_PHASES",
    "VALID_TRANSITIONS",
    "AckSpec",
    "AuditExpectation",
    "DomainAck",
    "ExpectationStatus",
    "GovernanceCheckError",
    "GovernanceOutcome",
    "PhaseTransition",
    "PhaseTransitionError",
    "ReconciliationResult",
    "ReconciliationStatus",
    "RunOrchestrationKernel",
    "RunPhase",
    "RunSpec",
    "create_rok",
    "reconcile",
]
