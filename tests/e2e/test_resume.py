"""A run released for another attempt is continued from the phase it is in, never rewound.

A first "worker" is played by hand over HTTP: it claims with a short lease,
moves the run some way and goes silent. The sweeper releases the run
(max_attempts=2) and the pool takes attempt 2 from where the first stopped.
"""

from __future__ import annotations

import threading
from typing import Any

from service.worker import RunContext
from tests.e2e.harness import Api, RokService, acks_by_pair, fast_pool, phases


def claim_by_hand(api: Api, handler: str, lease_ms: int = 400) -> tuple[str, dict[str, str]]:
    response = api.http.post(
        "/runs/claim", json={"worker_id": "doomed", "lease_ms": lease_ms, "handlers": [handler]}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body["run"]["id"], {"X-Lease-Token": body["lease"]["token"]}


def test_a_run_released_while_executing_is_executed_again_by_the_next_attempt(
    rok: RokService, api: Api
) -> None:
    ran: list[int] = []

    def job(ctx: RunContext) -> str:
        ran.append(ctx.attempt)
        return "done"

    run_id = api.create("job", max_attempts=2)
    claimed, lease = claim_by_hand(api, "job")
    assert claimed == run_id
    authorized = api.http.post(
        f"/runs/{run_id}/authorize", json={"decision": "GRANTED"}, headers=lease
    )
    assert authorized.status_code == 200
    assert api.http.post(f"/runs/{run_id}/begin-execution", headers=lease).status_code == 200

    fast_pool(rok.url, {"job": job}).run_until(1, timeout_s=30)

    run = api.get(run_id)
    assert ran == [2], "only the second attempt ran the handler here"
    assert run["phase"] == "COMPLETED" and run["attempt"] == 2
    assert phases(run) == ["AUTHORIZED", "EXECUTING", "GOVERNANCE_CHECK", "FINALIZING", "COMPLETED"]
    # the history records the new attempt in place (EXECUTING -> EXECUTING), then its moves
    assert [entry["attempt"] for entry in run["history"]] == [1, 1, 2, 2, 2, 2]
    assert [e["kind"] for e in run["history"]].count("attempt") == 1
    late = api.http.post(
        f"/runs/{run_id}/execution-complete", json={"success": True}, headers=lease
    )
    assert late.status_code == 409, "the first worker's token was fenced"
    assert run["reconciliation"]["status"] == "COMPLETE"


def test_a_run_released_in_governance_check_is_checked_and_finalized_not_re_executed(
    rok: RokService, api: Api
) -> None:
    executed = threading.Event()

    def job(ctx: RunContext) -> None:
        executed.set()

    run_id = api.create("job", max_attempts=2)
    _, lease = claim_by_hand(api, "job")
    api.http.post(f"/runs/{run_id}/authorize", json={"decision": "GRANTED"}, headers=lease)
    api.http.post(f"/runs/{run_id}/begin-execution", headers=lease)
    error = "timeout: handler 'job' ran past its run timeout of 10 ms and was abandoned"
    done = api.http.post(
        f"/runs/{run_id}/execution-complete",
        json={"success": False, "error": error},
        headers=lease,
    )
    assert done.status_code == 200

    fast_pool(rok.url, {"job": job}).run_until(1, timeout_s=30)

    run = api.get(run_id)
    assert not executed.is_set()
    assert run["phase"] == "FAILED" and run["attempt"] == 2 and run["error"] == error
    assert phases(run) == ["AUTHORIZED", "EXECUTING", "GOVERNANCE_CHECK", "FINALIZING", "FAILED"]
    [incident] = run["incidents"]
    assert incident["kind"] == "timeout", "the kind is recovered from the recorded error"
    acks = acks_by_pair(run)
    assert ("logs", "complete_trace") in acks
    # the first attempt died before its trace started: that evidence is honestly missing
    assert run["reconciliation"]["missing"] == [["logs", "start_trace"]]
