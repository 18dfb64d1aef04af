"""A stored run as the JSON the API promises (RunOut)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from fastapi.responses import JSONResponse

from service.model.audit import DomainAck, ReconciliationResult, expectation_status
from service.model.phases import PhaseTransition
from service.store.records import RunControl, RunRecord, RunRow
from service.store.summaries import RunSummary

INCIDENTS_DOMAIN = "incidents"


class RokJSONResponse(JSONResponse):
    """JSON straight from the presenters' dicts, skipping a second validation.

    The presenters build exactly the documented shapes (the response models
    still define the OpenAPI contract, and the API tests check the two agree);
    re-validating every run through pydantic cost a sizeable share of each
    request's CPU. Datetimes are aware UTC, written as pydantic writes them.
    """

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, default=_encode, option=_ORJSON_OPTIONS)
        except orjson.JSONEncodeError:
            # what orjson refuses and JSON allows: an integer past 64 bits in a run's input
            return json.dumps(
                content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_encode
            ).encode("utf-8")


# UTC as `Z` (as pydantic writes it); a run's input may hold any JSON object keys
_ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def reconciliation_json(result: ReconciliationResult) -> dict[str, Any]:
    return result.to_dict()


def ack_json(ack: DomainAck) -> dict[str, Any]:
    return {
        "domain": ack.domain,
        "action": ack.action,
        "result_id": ack.result_id,
        "error": ack.error,
        "at": ack.at,
        "late": ack.late,
        "details": ack.details,
        "actor": ack.actor,
    }


def _governance_json(row: RunRow) -> dict[str, Any] | None:
    verdict = row.governance_reconciliation
    if not row.governance_recorded or row.governance_checked_at is None or verdict is None:
        return None
    return {
        "passed": row.governance_passed,
        "checked_at": row.governance_checked_at,
        # as recorded; a verdict stored before `pending` existed shows it empty
        "reconciliation": reconciliation_json(ReconciliationResult.from_dict(verdict)),
    }


def _lease_json(row: RunRow) -> dict[str, Any] | None:
    if row.lease is None:
        return None
    return {"worker_id": row.lease.worker_id, "expires_at": row.lease.expires_at}


def run_state_json(row: RunRow) -> dict[str, Any]:
    """A run's state without its records (RunStateOut): `Prefer: return=minimal`.

    Built from the row the move already holds, so the answer reads nothing more
    inside the move's transaction (the whole run costs three more SELECTs there).
    """
    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "handler": row.handler,
        "phase": row.phase,
        "attempt": row.attempt,
        "max_attempts": row.max_attempts,
        "updated_at": row.updated_at,
        "execution_success": row.execution_success,
        "error": row.error,
        "lease": _lease_json(row),
        "governance": _governance_json(row),
        "cancel_requested": row.control.cancel_requested,
    }


def run_json(record: RunRecord, now: datetime) -> dict[str, Any]:
    row = record.row
    timely = {a.pair for a in record.acks if not a.late}
    return {
        "id": row.id,
        "tenant_id": row.tenant_id,
        "handler": row.handler,
        "input": row.input,
        "phase": row.phase,
        "attempt": row.attempt,
        "max_attempts": row.max_attempts,
        "priority": row.priority,
        "concurrency_keys": row.concurrency_keys or [],
        "run_timeout_ms": row.run_timeout_ms,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "traceparent": row.traceparent,
        "updated_at": row.updated_at,
        "execution_success": row.execution_success,
        "error": row.error,
        "lease": _lease_json(row),
        "governance": _governance_json(row),
        "history": [
            {
                "from": h.transition.from_phase,
                "to": h.transition.to_phase,
                "at": h.transition.at,
                "reason": h.transition.reason,
                "attempt": h.attempt,
                "kind": _entry_kind(h.transition),
                "details": h.transition.details,
                "actor": h.actor,
            }
            for h in record.history
        ],
        "expectations": [
            {
                "domain": e.domain,
                "action": e.action,
                "deadline_ms": e.deadline_ms,
                "deadline": e.deadline,
                "status": expectation_status(
                    e, timely, now, row.governance_recorded, row.is_terminal
                ),
            }
            for e in record.expectations
        ],
        "acks": [ack_json(a) for a in record.acks],
        "incidents": [
            # the id is the ack's own result: nothing in its details may replace it
            {**(a.details or {}), "incident_id": a.result_id}
            for a in record.acks
            if a.domain == INCIDENTS_DOMAIN and a.result_id is not None
        ],
        "reconciliation": reconciliation_json(record.reconciliation(now)),
        **control_json(row.control),
    }


def _entry_kind(move: PhaseTransition) -> str:
    if move.from_phase is not move.to_phase:
        return "transition"
    return "event" if "event" in move.details else "attempt"


def control_json(control: RunControl) -> dict[str, Any]:
    """The run-control fields of a run (DESIGN section 11)."""
    approval = None
    if control.approval_state is not None:
        approval = {
            "state": control.approval_state,
            "by": control.approval_by,
            "reason": control.approval_reason,
            "at": control.approval_at,
            "deadline": control.approval_deadline,
        }
    cancellation = None
    if control.cancel_requested_at is not None:
        cancellation = {
            "requested_at": control.cancel_requested_at,
            "by": control.cancel_by,
            "reason": control.cancel_reason,
        }
    return {
        "result": control.result,
        "not_before": control.not_before,
        "queue_deadline": control.queue_deadline,
        "retry": None if control.retry is None else control.retry.as_json(),
        "cancel_requested": cancellation is not None,
        "cancellation": cancellation,
        "approval": approval,
    }


def run_summary_json(summary: RunSummary, now: datetime) -> dict[str, Any]:
    """A run in a list (RunSummaryOut): no input, history, contract or acks."""
    return {
        "id": summary.id,
        "tenant_id": summary.tenant_id,
        "handler": summary.handler,
        "phase": summary.phase,
        "attempt": summary.attempt,
        "created_at": summary.created_at,
        "updated_at": summary.updated_at,
        "error": summary.error,
        "reconciliation_status": summary.reconciliation_status(now),
    }
