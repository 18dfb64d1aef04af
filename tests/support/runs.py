"""RunFactory: creates runs through the kernel and drives them to the phase a test needs."""

from __future__ import annotations

from typing import Any

from service.authority import Authority
from service.kernel.kernel import RunOrchestrationKernel, create_rok
from service.model.audit import DEFAULT_DOMAIN_EXPECTATIONS, ORCHESTRATOR_DOMAIN
from service.model.phases import RunPhase

# the default contract's domain acks, in the order reconciliation reports them
DOMAIN_PAIRS = sorted(DEFAULT_DOMAIN_EXPECTATIONS)


class RunFactory:
    """Creates runs and drives them through the lifecycle to the phase a test needs."""

    def __init__(self, authority: Authority) -> None:
        self.authority = authority

    def create(self, **spec: Any) -> str:
        kernel = create_rok(store=self.authority.store, settings=self.authority.settings, **spec)
        assert kernel.declare_expectations() is True
        return kernel.run_id

    def kernel(self, run_id: str, lease_token: str | None = None) -> RunOrchestrationKernel:
        return self.authority.kernel(run_id, lease_token)

    def ack_all(self, run_id: str) -> None:
        """Every domain expectation acked once, without errors."""
        kernel = self.kernel(run_id)
        for exp in kernel.load().expectations:
            if exp.domain != ORCHESTRATOR_DOMAIN:
                kernel.ack(exp.domain, exp.action, result_id=f"{exp.action}-1")

    def at(self, phase: RunPhase, *, checked: bool = False, **spec: Any) -> str:
        """A new run in `phase`; in GOVERNANCE_CHECK `checked` acks all and records a check."""
        run_id = self.create(**spec)
        kernel = self.kernel(run_id)
        if phase is RunPhase.CREATED:
            return run_id
        if phase is RunPhase.FAILED:
            kernel.fail("made to fail")
            return run_id
        kernel.authorize("GRANTED")
        if phase is RunPhase.AUTHORIZED:
            return run_id
        kernel.begin_execution()
        if phase is RunPhase.EXECUTING:
            return run_id
        kernel.execution_complete(success=True)
        if phase is RunPhase.GOVERNANCE_CHECK and not checked:
            return run_id
        self.ack_all(run_id)
        assert kernel.governance_check().passed
        if phase is RunPhase.GOVERNANCE_CHECK:
            return run_id
        kernel.begin_finalization()
        if phase is RunPhase.FINALIZING:
            return run_id
        assert phase is RunPhase.COMPLETED, phase
        kernel.finalize()
        return run_id
