"""What callers hand the kernel: a run to create, acks to record, a check's outcome."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.config import Settings
from service.errors import InvalidRequest
from service.model.audit import (
    ORCHESTRATOR_DOMAIN,
    ReconciliationResult,
    custom_contract,
    default_contract,
)
from service.store.records import NewRun

GRANTED = "GRANTED"
"""The one authorization decision that lets a run proceed."""
MAX_ACK_BATCH = 100


@dataclass(frozen=True)
class RunSpec:
    """What a run is created with; everything optional has a default from Settings."""

    tenant_id: str | None = None
    handler: str | None = None
    input: Any = None
    run_timeout_ms: int | None = None
    expectations: Sequence[tuple[str, str, int | None]] | None = None
    idempotency_key: str | None = None
    max_attempts: int = 1
    priority: int = 0

    def new_run(
        self, run_id: str, caller_run_id: str | None, settings: Settings, now: datetime
    ) -> NewRun:
        """The run to write at T0: its contract from this spec, or Settings' default."""
        timeout_ms = self.run_timeout_ms or settings.default_run_timeout_ms
        grace_ms = settings.grace_period_ms
        if not settings.rac_enabled:
            contract: list[tuple[str, str, int]] = []
        elif self.expectations is None:
            contract = default_contract(timeout_ms, grace_ms)
        else:
            contract = custom_contract(self.expectations, timeout_ms, grace_ms)
        scope = None
        if self.idempotency_key is not None:
            scope = f"{self.tenant_id or ''}\x1f{self.idempotency_key}"
        return NewRun(
            id=run_id,
            tenant_id=self.tenant_id,
            handler=self.handler,
            input=self.input,
            run_timeout_ms=timeout_ms,
            max_attempts=self.max_attempts,
            priority=self.priority,
            contract=contract,
            idempotency_scope=scope,
            request_fingerprint=self.fingerprint(caller_run_id),
            created_at=now,
        )

    def fingerprint(self, run_id: str | None) -> str:
        """A digest of the request, so a reused idempotency key can be compared."""
        body = {
            "run_id": run_id,
            "tenant_id": self.tenant_id,
            "handler": self.handler,
            "input": self.input,
            "run_timeout_ms": self.run_timeout_ms,
            "expectations": [list(e) for e in self.expectations]
            if self.expectations is not None
            else None,
            "max_attempts": self.max_attempts,
            "priority": self.priority,
        }
        encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(encoded.encode()).hexdigest()


@dataclass(frozen=True)
class AckSpec:
    """One ack as a domain sends it (the kernel adds the time and whether it is late)."""

    domain: str
    action: str
    result_id: str | None = None
    error: str | None = None
    details: dict[str, Any] | None = None


def check_batch(batch: Sequence[AckSpec]) -> None:
    """InvalidRequest, naming the ack, for a batch the kernel will not record."""
    if not batch:
        raise InvalidRequest("a batch of acks needs at least one ack")
    if len(batch) > MAX_ACK_BATCH:
        raise InvalidRequest(f"a batch holds at most {MAX_ACK_BATCH} acks, not {len(batch)}")
    for index, spec in enumerate(batch):
        if spec.domain == ORCHESTRATOR_DOMAIN:
            where = "" if len(batch) == 1 else f"ack {index}: "
            raise InvalidRequest(
                f"{where}domain 'orchestrator' is the kernel's own; clients cannot ack it"
            )


@dataclass(frozen=True)
class GovernanceOutcome:
    passed: bool
    reconciliation: ReconciliationResult
