"""Invariant 5, the phase machine: every move it forbids is 409 naming both phases,
and changes nothing."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from service.model.phases import RunPhase
from tests.api.refusals import nothing_changes, refused, send
from tests.api.runs_api import RunsApi, finalize_run_acks

# action -> (path, body, the phase it asks for)
ACTIONS: dict[str, tuple[str, Any, RunPhase]] = {
    "authorize": ("authorize", {"decision": "GRANTED"}, RunPhase.AUTHORIZED),
    "deny": ("authorize", {"decision": "DENIED"}, RunPhase.AUTHORIZED),
    "authorize-and-begin": (
        "authorize",
        {"decision": "GRANTED", "begin_execution": True},
        RunPhase.AUTHORIZED,
    ),
    "begin-execution": ("begin-execution", None, RunPhase.EXECUTING),
    "execution-complete": ("execution-complete", {"success": True}, RunPhase.GOVERNANCE_CHECK),
    "governance-check": ("governance-check", {"timeout_ms": 1}, RunPhase.GOVERNANCE_CHECK),
    "check-and-finalize": (
        "governance-check",
        {"timeout_ms": 1, "finalize": True},
        RunPhase.GOVERNANCE_CHECK,
    ),
    "begin-finalization": ("begin-finalization", None, RunPhase.FINALIZING),
    "finalize": ("finalize", {"success": True}, RunPhase.COMPLETED),
    "finalize-failed": ("finalize", {"success": False}, RunPhase.FAILED),
    "fail": ("fail", {"error": "abandoned"}, RunPhase.FAILED),
}
# state -> the actions that phase (with or without a recorded check) allows
ALLOWED: dict[str, set[str]] = {
    "CREATED": {"authorize", "deny", "authorize-and-begin", "fail"},
    "AUTHORIZED": {"begin-execution", "fail"},
    "EXECUTING": {"execution-complete", "fail"},
    "GOVERNANCE_CHECK unchecked": {
        "governance-check",
        "check-and-finalize",
        "finalize-failed",
        "fail",
    },
    "GOVERNANCE_CHECK checked": {
        "governance-check",
        "check-and-finalize",
        "begin-finalization",
        "finalize",
        "finalize-failed",
        "fail",
    },
    "FINALIZING": {"finalize", "finalize-failed", "fail"},
    "COMPLETED": set(),
    "FAILED": set(),
}


def _run_in(api: RunsApi, state: str) -> str:
    phase, _, checked = state.partition(" ")
    return api.at(RunPhase(phase), checked=checked == "checked")


def test_a_move_the_phase_machine_forbids_is_409_naming_both_phases(
    client: TestClient, api: RunsApi
) -> None:
    """Every action refused in every state (phase, with or without a recorded check)."""
    runs = {state: _run_in(api, state) for state in ALLOWED}
    with nothing_changes(api):
        for state, run_id in runs.items():
            current = state.partition(" ")[0]
            for name, (path, body, requested) in ACTIONS.items():
                if name in ALLOWED[state]:
                    continue
                response = send(client, "POST", f"/runs/{run_id}/{path}", body)
                refused(response, 409, current, requested.value, run_id)
                payload = response.json()
                assert payload["current_phase"] == current, (state, name, payload)
                assert payload["requested_phase"] == requested.value, (state, name, payload)


def test_finalize_success_and_begin_finalization_need_a_recorded_check(
    client: TestClient, api: RunsApi
) -> None:
    run_id = api.at(RunPhase.GOVERNANCE_CHECK)
    api.ack_all(run_id)
    with nothing_changes(api):
        for path, body in (("finalize", {"success": True}), ("finalize", None)):
            response = send(client, "POST", f"/runs/{run_id}/{path}", body)
            refused(response, 409, "governance check", "GOVERNANCE_CHECK", "COMPLETED")
        response = send(client, "POST", f"/runs/{run_id}/begin-finalization")
        refused(response, 409, "governance check", "GOVERNANCE_CHECK", "FINALIZING")


def test_second_finalize_and_fail_after_finalize_change_nothing(
    client: TestClient, api: RunsApi
) -> None:
    completed = api.at(RunPhase.COMPLETED)
    failed = api.at(RunPhase.GOVERNANCE_CHECK)
    api.finalize(failed, success=False)
    with nothing_changes(api):
        for run_id, phase in ((completed, "COMPLETED"), (failed, "FAILED")):
            for path, body in (
                ("finalize", {"success": True}),
                ("finalize", {"success": False, "error": "again"}),
                ("fail", {"error": "too late"}),
            ):
                response = send(client, "POST", f"/runs/{run_id}/{path}", body)
                refused(response, 409, phase, "terminal" if path == "finalize" else phase)
    for run_id in (completed, failed):
        assert finalize_run_acks(api.get(run_id)) == 1
