"""One governed run, driven by a client generated from openapi/openapi.json.

`rok_client` is what openapi-python-client generates from the committed
contract (tests/contract/test_generated_client.py generates it into a
temporary folder, type-checks this module against it with mypy --strict, then
runs it as `python -m tests.contract.generated_client_run BASE_URL`). Only the
client's typed calls and models are used: no cast, no dict of a run, so a
contract that generates wrong types fails here. Answers are narrowed with
isinstance (each call returns its success model or a problem document).

It imports nothing from rok: it is what a user of the contract would write.
"""

from __future__ import annotations

import sys
from typing import TypeVar

from rok_client import AuthenticatedClient
from rok_client.api.evidence import check_governance, record_ack, record_acks
from rok_client.api.runs import (
    authorize_run,
    begin_execution,
    complete_execution,
    create_run,
    finalize_run,
    get_run,
    list_runs,
)
from rok_client.api.workers import claim_run, heartbeat
from rok_client.models import (
    AckBatchIn,
    AckBatchOut,
    AckIn,
    AckOut,
    AuthorizeIn,
    ClaimIn,
    ClaimOut,
    CreateRunIn,
    ExecutionCompleteIn,
    ExpectationIn,
    GovernanceCheckIn,
    GovernanceCheckOut,
    HeartbeatIn,
    LeaseGrantOut,
    Problem,
    ReconciliationStatus,
    RunOut,
    RunPhase,
    ValidationProblem,
)

HANDLER = "generated-client"
WORKER = "generated-worker"
# the run's audit contract: what its governance domains owe it
CONTRACT = [("policies", "evaluate_policy"), ("traces", "start_trace"), ("traces", "end_trace")]

Answer = TypeVar("Answer")


def expect(answer: object, kind: type[Answer]) -> Answer:
    """The answer as `kind`, or a failure that shows the problem the service sent."""
    if not isinstance(answer, kind):
        raise AssertionError(f"expected a {kind.__name__}, got {answer!r}")
    return answer


def drive(base_url: str) -> None:
    # ROK_AUTH=off: the key is not checked, but the contract says every call sends one
    with AuthenticatedClient(base_url=base_url, token="unused-with-auth-off") as client:
        contract = [ExpectationIn(domain=d, action=a, deadline_ms=60_000) for d, a in CONTRACT]
        body = CreateRunIn(handler=HANDLER, input_={"doc": "q3.pdf"}, expectations=contract)
        run = expect(create_run.sync(client=client, body=body), RunOut)
        assert run.phase == RunPhase.CREATED

        claim = ClaimIn(worker_id=WORKER, handlers=[HANDLER], wait_ms=1000)
        claimed = expect(claim_run.sync(client=client, body=claim), ClaimOut)
        assert claimed.run.id == run.id
        token = claimed.lease.token
        beat = HeartbeatIn(worker_id=WORKER)
        expect(heartbeat.sync(run.id, client=client, body=beat, x_lease_token=token), LeaseGrantOut)

        grant = AuthorizeIn(decision="GRANTED")
        run = expect(
            authorize_run.sync(run.id, client=client, body=grant, x_lease_token=token), RunOut
        )
        assert run.phase == RunPhase.AUTHORIZED
        # a move with no body: the client sends none
        run = expect(begin_execution.sync(run.id, client=client, x_lease_token=token), RunOut)
        assert run.phase == RunPhase.EXECUTING

        # the same move again is refused, as a problem document the client parses
        refused = expect(begin_execution.sync(run.id, client=client, x_lease_token=token), Problem)
        assert (refused.status, refused.code) == (409, "phase_conflict"), refused
        assert refused.current_phase == RunPhase.EXECUTING

        (domain, action) = CONTRACT[0]
        ack = AckIn(domain=domain, action=action, result_id="ev-1")
        expect(record_ack.sync(run.id, client=client, body=ack), AckOut)
        batch = AckBatchIn(acks=[AckIn(domain=d, action=a, result_id=a) for d, a in CONTRACT[1:]])
        acked = expect(record_acks.sync(run.id, client=client, body=batch), AckBatchOut)
        assert [(a.domain, a.action) for a in acked.acks] == CONTRACT[1:]

        done = ExecutionCompleteIn(success=True)
        run = expect(
            complete_execution.sync(run.id, client=client, body=done, x_lease_token=token), RunOut
        )
        assert run.phase == RunPhase.GOVERNANCE_CHECK

        check = GovernanceCheckIn(timeout_ms=1000, require_all_acks=True)
        checked = expect(
            check_governance.sync(run.id, client=client, body=check, x_lease_token=token),
            GovernanceCheckOut,
        )
        assert checked.passed, checked.reconciliation
        assert checked.reconciliation.missing == []

        run = expect(finalize_run.sync(run.id, client=client, x_lease_token=token), RunOut)
        assert run.phase == RunPhase.COMPLETED

        final = expect(get_run.sync(run.id, client=client), RunOut)
        assert final.phase == RunPhase.COMPLETED
        assert final.execution_success is True and final.lease is None
        assert final.reconciliation.status == ReconciliationStatus.COMPLETE
        assert [[e.domain, e.action] for e in final.expectations][:3] == [list(p) for p in CONTRACT]
        assert {(a.domain, a.action) for a in final.acks} >= set(CONTRACT)

        # a refusal of rok's own (not pydantic's) is a 422 of the documented shape too
        invalid = expect(list_runs.sync(client=client, cursor="not-a-cursor"), ValidationProblem)
        assert invalid.code == "invalid_request" and invalid.errors, invalid


if __name__ == "__main__":
    drive(sys.argv[1])
    print("a governed run went through the generated client: COMPLETED")
