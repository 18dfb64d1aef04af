"""The kernel: phases, the audit contract and the authority that drives a run. No HTTP."""

from service.errors import GovernanceCheckError, PhaseTransitionError
from service.kernel.kernel import (
    AckSpec,
    GovernanceOutcome,
    RunOrchestrationKernel,
    RunSpec,
    create_rok,
)
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
    PhaseContext,
    PhaseStateMachine,
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
    "PhaseContext",
    "PhaseStateMachine",
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
