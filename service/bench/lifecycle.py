"""One full governed lifecycle over REST, driven the way a worker drives it.

create -> authorize -> begin-execution -> the four domain acks ->
execution-complete -> governance-check (strict) -> finalize: ten requests,
each recorded under its endpoint name. The client picks the run id, so it
never has to parse a response to continue (the load client stays cheap).
Like the WorkerPool, every create and move asks for the run's state alone
(`Prefer: return=minimal`), not the whole run with its history and acks.
"""

from __future__ import annotations

import time
import uuid

import httpx

from service.bench.load import Recorder, timed
from service.model.audit import DEFAULT_DOMAIN_EXPECTATIONS

HANDLER = "bench.noop"
# Long enough that no check in the bench times out: a timeout would be a
# failure to report, not a latency to average in.
CHECK_TIMEOUT_MS = 60_000

CREATE = "POST /runs"
AUTHORIZE = "POST /runs/{id}/authorize"
BEGIN = "POST /runs/{id}/begin-execution"
ACK = "POST /runs/{id}/acks"
COMPLETE = "POST /runs/{id}/execution-complete"
CHECK = "POST /runs/{id}/governance-check"
FINALIZE = "POST /runs/{id}/finalize"
CLAIM = "POST /runs/claim"

REQUESTS_PER_LIFECYCLE = 6 + len(DEFAULT_DOMAIN_EXPECTATIONS)
# RFC 7240, as the WorkerPool sends it on its moves (service.api.prefer)
MINIMAL = {"Prefer": "return=minimal"}


async def create_run(client: httpx.AsyncClient, recorder: Recorder) -> str:
    run_id = str(uuid.uuid4())
    await create_run_with_id(client, recorder, run_id)
    return run_id


async def create_run_with_id(
    client: httpx.AsyncClient,
    recorder: Recorder,
    run_id: str,
    run_timeout_ms: int | None = None,
) -> None:
    """`run_timeout_ms` (default: the service's) also sets the finalize_run deadline."""
    body: dict[str, object] = {"run_id": run_id, "handler": HANDLER, "input": {"bench": True}}
    if run_timeout_ms is not None:
        body["run_timeout_ms"] = run_timeout_ms
    await timed(client, recorder, CREATE, "POST", "/runs", expect=201, json=body, headers=MINIMAL)


async def start_run(client: httpx.AsyncClient, recorder: Recorder, run_id: str) -> None:
    """CREATED -> AUTHORIZED -> EXECUTING."""
    base = f"/runs/{run_id}"
    await timed(
        client,
        recorder,
        AUTHORIZE,
        "POST",
        f"{base}/authorize",
        json={"decision": "GRANTED"},
        headers=MINIMAL,
    )
    await timed(client, recorder, BEGIN, "POST", f"{base}/begin-execution", headers=MINIMAL)


async def ack(
    client: httpx.AsyncClient, recorder: Recorder, run_id: str, domain: str, action: str
) -> None:
    await timed(
        client,
        recorder,
        ACK,
        "POST",
        f"/runs/{run_id}/acks",
        expect=201,
        json={"domain": domain, "action": action, "result_id": None},
    )


async def complete_execution(client: httpx.AsyncClient, recorder: Recorder, run_id: str) -> None:
    await timed(
        client,
        recorder,
        COMPLETE,
        "POST",
        f"/runs/{run_id}/execution-complete",
        json={"success": True},
        headers=MINIMAL,
    )


async def governance_check(
    client: httpx.AsyncClient, recorder: Recorder, run_id: str
) -> httpx.Response:
    response = await timed(
        client,
        recorder,
        CHECK,
        "POST",
        f"/runs/{run_id}/governance-check",
        json={"timeout_ms": CHECK_TIMEOUT_MS, "require_all_acks": True},
        headers=MINIMAL,
    )
    return response


async def finalize(client: httpx.AsyncClient, recorder: Recorder, run_id: str) -> None:
    await timed(
        client,
        recorder,
        FINALIZE,
        "POST",
        f"/runs/{run_id}/finalize",
        json={"success": True},
        headers=MINIMAL,
    )


async def lifecycle(client: httpx.AsyncClient, recorder: Recorder) -> None:
    """One run from creation to COMPLETED; its whole duration is recorded as a unit."""
    started = time.perf_counter()
    run_id = await create_run(client, recorder)
    await start_run(client, recorder, run_id)
    for domain, action in DEFAULT_DOMAIN_EXPECTATIONS:
        await ack(client, recorder, run_id, domain, action)
    await complete_execution(client, recorder, run_id)
    await governance_check(client, recorder, run_id)
    await finalize(client, recorder, run_id)
    recorder.record_unit(time.perf_counter() - started)
