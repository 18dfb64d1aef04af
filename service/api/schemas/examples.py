"""Example answers for the OpenAPI (what a run looks like midway through governance).

Taken from a real run of the service, so that each one validates against its model.
"""

from __future__ import annotations

from typing import Any

RUN_ID = "b9d1540a-9a04-4676-b249-83d6b461aa91"

RECONCILIATION_EXAMPLE: dict[str, Any] = {
    "status": "COMPLETE",
    "missing": [],
    "drift": [],
    "invalid": [],
    "failed": [],
    "stale": False,
    "pending": [["orchestrator", "finalize_run"]],
}

ACK_EXAMPLE: dict[str, Any] = {
    "domain": "policies",
    "action": "evaluate_policy",
    "result_id": "ev-7",
    "error": None,
    "at": "2026-12-02T09:09:59.520416Z",
    "late": False,
    "details": None,
    "actor": None,
}

_HISTORY: list[dict[str, Any]] = [
    {
        "from": "CREATED",
        "to": "AUTHORIZED",
        "at": "2026-12-02T09:09:59.482240Z",
        "reason": "authorization granted",
        "attempt": 1,
        "kind": "transition",
        "details": {"decision": "GRANTED"},
        "actor": None,
    },
    {
        "from": "AUTHORIZED",
        "to": "EXECUTING",
        "at": "2026-12-02T09:09:59.482240Z",
        "reason": "execution started",
        "attempt": 1,
        "kind": "transition",
        "details": {},
        "actor": None,
    },
    {
        "from": "EXECUTING",
        "to": "GOVERNANCE_CHECK",
        "at": "2026-12-02T09:09:59.537515Z",
        "reason": "execution succeeded",
        "attempt": 1,
        "kind": "transition",
        "details": {"success": True},
        "actor": None,
    },
]

RUN_EXAMPLE: dict[str, Any] = {
    "id": RUN_ID,
    "tenant_id": None,
    "handler": "summarize",
    "input": {"doc": "q3.pdf"},
    "phase": "GOVERNANCE_CHECK",
    "attempt": 1,
    "max_attempts": 1,
    "priority": 0,
    "run_timeout_ms": 60000,
    "created_at": "2026-12-02T09:09:59.360847Z",
    "created_by": None,
    "updated_at": "2026-12-02T09:09:59.571543Z",
    "execution_success": True,
    "error": None,
    "lease": {"worker_id": "host-1/pid-42", "expires_at": "2026-12-02T09:10:29.414142Z"},
    "governance": {
        "passed": True,
        "checked_at": "2026-12-02T09:09:59.571543Z",
        "reconciliation": RECONCILIATION_EXAMPLE,
    },
    "history": _HISTORY,
    "expectations": [
        {
            "domain": "policies",
            "action": "evaluate_policy",
            "deadline_ms": 65000,
            "deadline": "2026-12-02T09:11:04.482240Z",
            "status": "ACKED",
        },
        {
            "domain": "orchestrator",
            "action": "finalize_run",
            "deadline_ms": 65000,
            "deadline": "2026-12-02T09:11:04.482240Z",
            "status": "PENDING",
        },
    ],
    "acks": [ACK_EXAMPLE],
    "incidents": [],
    "reconciliation": RECONCILIATION_EXAMPLE,
    "concurrency_keys": [],
    "traceparent": None,
    "result": None,
    "not_before": None,
    "queue_deadline": None,
    "retry": None,
    "cancel_requested": False,
    "cancellation": None,
    "approval": None,
}

LEASE_GRANT_EXAMPLE: dict[str, Any] = {
    "worker_id": "host-1/pid-42",
    "expires_at": "2026-12-02T09:10:29.414142Z",
    "token": "b80e4c9d5dfddabfea777cf474ea5bb1",
    "cancel_requested": False,
    "cancel_reason": None,
}

CLAIM_EXAMPLE: dict[str, Any] = {
    "run": {**RUN_EXAMPLE, "phase": "CREATED", "history": [], "governance": None},
    "lease": LEASE_GRANT_EXAMPLE,
}

# what a move answers with `Prefer: return=minimal` (RunStateOut)
STATE_EXAMPLE: dict[str, Any] = {
    key: RUN_EXAMPLE[key]
    for key in (
        "id",
        "tenant_id",
        "handler",
        "phase",
        "attempt",
        "max_attempts",
        "updated_at",
        "execution_success",
        "error",
        "lease",
        "governance",
        "cancel_requested",
    )
}

SUMMARY_EXAMPLE: dict[str, Any] = {
    "id": RUN_ID,
    "tenant_id": None,
    "handler": "summarize",
    "phase": "GOVERNANCE_CHECK",
    "attempt": 1,
    "created_at": "2026-12-02T09:09:59.360847Z",
    "updated_at": "2026-12-02T09:09:59.571543Z",
    "error": None,
    "reconciliation_status": "COMPLETE",
}
