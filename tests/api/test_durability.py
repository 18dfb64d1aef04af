"""What a server answered survives it: restart on the same SQLite file, read the same bytes."""

from __future__ import annotations

import json
from typing import Any

from service.model.phases import RunPhase
from tests.api.runs_api import DOMAIN_PAIRS, RunsApi
from tests.support.server import running_server

# Deadlines an hour away: reconciliations and expectation statuses depend on now
# only through them, so the bytes cannot change while the test runs.
HOUR_MS = 3_600_000


def drive_runs_to_every_phase(api: RunsApi) -> list[str]:
    def at(phase: RunPhase, **body: Any) -> str:
        return api.at(phase, **{"run_timeout_ms": HOUR_MS, **body})

    ids = [
        at(RunPhase.CREATED, tenant_id="acme", handler="h", input={"doc": "é ✓ 𝄞", "n": [1, 2.5]}),
        at(RunPhase.AUTHORIZED, idempotency_key="k-1"),
        at(RunPhase.EXECUTING, run_timeout_ms=2 * HOUR_MS),
        at(RunPhase.GOVERNANCE_CHECK),
        at(RunPhase.GOVERNANCE_CHECK, checked=True),
        at(RunPhase.FINALIZING),
        at(RunPhase.COMPLETED, expectations=[{"domain": "billing", "action": "charge"}]),
        at(RunPhase.FAILED),
    ]
    denied = at(RunPhase.CREATED)
    api.authorize(denied, decision="DENIED", reason="no budget")
    strict = at(RunPhase.GOVERNANCE_CHECK)
    api.ack(strict, "incidents", "create_incident", result_id="inc-9", details={"sev": 2})
    api.ack(strict, "policies", "evaluate_policy", error="engine down")
    api.governance_check(strict, timeout_ms=1, require_all_acks=True)
    api.ack(strict, "logs", "start_trace")  # late
    return [*ids, denied, strict]


def first_difference(before: bytes, after: bytes) -> str:
    old: Any = json.loads(before)
    new: Any = json.loads(after)
    for key in old:
        if old[key] != new.get(key):
            return f"{key}: {old[key]!r} became {new.get(key)!r}"
    return "same JSON, different bytes (key order or number formatting)"


def test_a_restarted_server_answers_the_same_bytes(sqlite_migrated_url: str) -> None:
    with running_server(sqlite_migrated_url) as server, server.client() as http:
        run_ids = drive_runs_to_every_phase(RunsApi(http))
        before = {run_id: http.get(f"/runs/{run_id}").content for run_id in run_ids}
        listing_before = http.get("/runs", params={"limit": 500}).content
    # leaving the block sent SIGTERM and checked for a clean exit

    with running_server(sqlite_migrated_url) as server, server.client() as http:
        after = {run_id: http.get(f"/runs/{run_id}").content for run_id in run_ids}
        listing_after = http.get("/runs", params={"limit": 500}).content

    for run_id in run_ids:
        assert after[run_id] == before[run_id], (
            f"run {run_id} reads differently after a restart: "
            + first_difference(before[run_id], after[run_id])
        )
    assert listing_after == listing_before


def test_what_was_answered_survives_sigkill(sqlite_migrated_url: str) -> None:
    with running_server(sqlite_migrated_url) as server, server.client() as http:
        api = RunsApi(http)
        finished = api.at(RunPhase.COMPLETED, run_timeout_ms=HOUR_MS)
        moving = api.at(RunPhase.EXECUTING, run_timeout_ms=HOUR_MS)
        answered = api.execution_complete(moving, success=False, error="killed next")
        ack = api.ack(moving, "incidents", "create_incident", result_id="inc-1")
        before = {run_id: http.get(f"/runs/{run_id}").content for run_id in (finished, moving)}
        server.kill()

    with running_server(sqlite_migrated_url) as server, server.client() as http:
        api = RunsApi(http)
        run = api.get(moving)
        assert run["phase"] == answered["phase"] == "GOVERNANCE_CHECK"
        assert run["history"] == answered["history"]
        assert run["acks"][-1] == ack
        for run_id, content in before.items():
            assert http.get(f"/runs/{run_id}").content == content
        # and the run carries on where it was
        for domain, action in DOMAIN_PAIRS[1:]:
            api.ack(moving, domain, action)
        assert api.governance_check(moving, timeout_ms=1000)["passed"] is True
        assert api.finalize(moving, success=False)["phase"] == "FAILED"
