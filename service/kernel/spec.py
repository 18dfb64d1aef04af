"""What callers hand the kernel: a run to create, acks to record, a check's outcome."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.config import Settings
from service.errors import InvalidRequest
from service.model.audit import (
    ORCHESTRATOR_DOMAIN,
    ReconciliationResult,
    custom_contract,
    default_contract,
)
from service.store.limits import check_run_keys
from service.store.records import NO_CONTROL, NewRun, RetryPolicy, RunControl

GRANTED = "GRANTED"
"""The one authorization decision that lets a run proceed."""
APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
"""The decision that holds a run for a human's approval (a policy asked for one)."""
MAX_ACK_BATCH = 100
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Caller:
    """Who asks the kernel to act: recorded as the actor, confined to one tenant's runs."""

    actor: str | None = None
    """The API key's id, written on every record it makes; None: the service itself."""
    tenant: str | None = None
    """Only runs of this tenant exist for this caller (others are RunNotFound); None: all."""


SERVICE = Caller()
"""The service acting for itself (the sweeper), or anyone with auth off."""


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
    concurrency_keys: Sequence[str] = ()
    not_before: datetime | None = None
    queue_timeout_ms: int | None = None
    retry: RetryPolicy | None = None
    requires_approval: bool = False
    approval_timeout_ms: int | None = None

    def control(self, settings: Settings, now: datetime) -> RunControl:
        """The run-control columns this spec declares (DESIGN section 11)."""
        if not (self.not_before or self.queue_timeout_ms or self.retry or self.requires_approval):
            return NO_CONTROL
        queue_deadline = None
        if self.queue_timeout_ms is not None:
            # the clock of a scheduled run starts at its start time, not at its creation
            queue_deadline = max(now, self.not_before or now) + timedelta(
                milliseconds=self.queue_timeout_ms
            )
        approval: dict[str, Any] = {}
        if self.requires_approval:
            ms = self.approval_timeout_ms or settings.approval_timeout_ms
            approval = {
                "approval_state": "pending",
                "approval_deadline": now + timedelta(milliseconds=ms),
            }
        return RunControl(
            not_before=self.not_before,
            queue_deadline=queue_deadline,
            retry=self.retry,
            **approval,
        )

    traceparent: str | None = None
    """The trace the run joins; not part of the request's fingerprint."""

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
            scope = idempotency_scope(self.tenant_id, self.idempotency_key)
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
            control=self.control(settings, now),
            traceparent=self.traceparent,
            concurrency_keys=check_run_keys(self.concurrency_keys),
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
        # run control only when declared, so keys stored before it still match
        control = {
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "queue_timeout_ms": self.queue_timeout_ms,
            "retry": self.retry.as_json() if self.retry else None,
            "requires_approval": self.requires_approval or None,
            "approval_timeout_ms": self.approval_timeout_ms,
        }
        body.update({name: value for name, value in control.items() if value is not None})
        if self.concurrency_keys:  # absent otherwise: fingerprints stored before keys still match
            body["concurrency_keys"] = list(self.concurrency_keys)
        encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(encoded.encode()).hexdigest()


def idempotency_scope(tenant_id: str | None, key: str) -> str:
    """The tenant and the key as one string that splits back at its first \\x1f.

    A tenant id holding \\x1f (or shaped like what replaces it: 64 hex digits)
    becomes its SHA-256, so no tenant id can end where another tenant's key
    begins; every other tenant id is kept as is, as the scopes stored before.
    """
    tenant = tenant_id or ""
    if "\x1f" in tenant or _HEX_DIGEST.fullmatch(tenant):
        tenant = hashlib.sha256(tenant.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{tenant}\x1f{key}"


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


def check_ack_room(recorded: int, adding: int, limit: int) -> None:
    """InvalidRequest naming ROK_MAX_ACKS_PER_RUN when `adding` acks would pass it."""
    if recorded + adding > limit:
        raise InvalidRequest(
            f"the run has {recorded} acks: {adding} more would pass the limit of {limit} "
            "acks per run (ROK_MAX_ACKS_PER_RUN)"
        )


@dataclass(frozen=True)
class GovernanceOutcome:
    passed: bool
    reconciliation: ReconciliationResult
