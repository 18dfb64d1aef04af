"""The owed feed: a domain asks which live runs still wait for its evidence.

A domain in any language needs no worker pool: it long-polls this feed, does
its job for each run listed and acks through POST /runs/{run_id}/acks; the
ack takes the pair off the feed in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Request, Response

from service.api.deps import AuthorityDep, PrincipalDep, require
from service.api.presenters import RokJSONResponse
from service.api.routes.common import READ_MANY
from service.api.schemas.owed import MAX_OWED_WAIT_MS, OwedOut, OwedPhase
from service.errors import InvalidRequest
from service.model.audit import ORCHESTRATOR_DOMAIN
from service.model.phases import RunPhase
from service.store.keys import ACKS_PREFIX
from service.store.owed import OwedFeed, OwedQuery, OwedRun

router = APIRouter(prefix="/domains", tags=["evidence"])
T = TypeVar("T")

DomainName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        pattern=r"^\S(.*\S)?$",
        description="The domain, as the runs' expectations name it (e.g. `incidents`).",
    ),
]


@router.get(
    "/{domain}/owed",
    response_model=OwedOut,
    responses=READ_MANY,
    operation_id="list_owed",
    summary="Live runs that still owe this domain an ack, oldest first; long-polls with wait_ms",
    description="The feed a governance domain in any language reads: runs in CREATED … "
    "GOVERNANCE_CHECK with a pending expectation of `domain`, each with the actions it "
    "still owes (an index of pending expectations, so finished runs cost nothing). With "
    "`wait_ms` it answers as soon as one exists (a new run, a run entering `phase`), else "
    "with an empty list when the wait ends. Needs `acks:<domain>` (or admin); a tenant's "
    "key sees its own runs.",
)
async def owed(
    domain: DomainName,
    request: Request,
    authority: AuthorityDep,
    principal: PrincipalDep,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=500,
            description="At most this many runs (fewer when runs owe "
            "several actions: it bounds the rows read).",
        ),
    ] = 50,
    wait_ms: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_OWED_WAIT_MS,
            description="Wait up to this long for a run to be owed when none is (0: answer now).",
        ),
    ] = 0,
    phase: Annotated[
        OwedPhase | None,
        Query(
            description="Only runs in this phase (a domain that judges an execution asks for "
            "GOVERNANCE_CHECK: the runs whose execution ended)."
        ),
    ] = None,
) -> Response:
    """Runs in CREATED … GOVERNANCE_CHECK whose governance verdict is not recorded yet,
    with the domain's actions not acked yet. A key needs `acks:<domain>`; a tenant's key
    sees its tenant's runs only. Async on purpose: the wait is a future, not a thread."""
    if domain == ORCHESTRATOR_DOMAIN:
        raise InvalidRequest(
            "the orchestrator domain is the kernel's own: no run owes it an ack anyone can send"
        )
    require(principal, f"{ACKS_PREFIX}{domain}")
    query = OwedQuery(
        domain=domain,
        limit=limit,
        phase=RunPhase(phase.value) if phase is not None else None,
        tenant_id=principal.tenant_scope,
    )
    feed = OwedFeed(authority.database, authority.signals)
    runs = await _unless_gone(request, feed.wait(query, wait_ms / 1000.0))
    return RokJSONResponse({"items": [_owed_json(run) for run in runs or []]})


async def _unless_gone(request: Request, waiting: Coroutine[Any, Any, T]) -> T | None:
    """`waiting`'s result, or None once the client hung up: a poll nobody reads must not
    hold on for the rest of its wait_ms (nor hold up a server shutting down)."""
    wait = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({wait, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (wait, gone):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return wait.result() if not wait.cancelled() else None


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass  # the (empty) body of the GET


def _owed_json(run: OwedRun) -> dict[str, object]:
    return {
        "run_id": run.run_id,
        "tenant_id": run.tenant_id,
        "handler": run.handler,
        "phase": run.phase.value,
        "created_at": run.created_at,
        "actions": list(run.actions),
    }
