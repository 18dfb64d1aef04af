"""Verify: recompute a run's sealed history (DESIGN.md section 9, tamper evidence)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter

from service.api.deps import AuthorityDep, PrincipalDep, require
from service.api.routes.common import READ_ONE
from service.api.schemas.verify import VerifyOut
from service.errors import RunNotFound
from service.store.keys import RUNS_READ

router = APIRouter(prefix="/runs", tags=["evidence"])


@router.get(
    "/{run_id}/verify",
    response_model=VerifyOut,
    responses=READ_ONE,
    operation_id="verify_run",
    summary="Check that the run's stored history is the one that was sealed",
)
def verify_run(run_id: UUID, authority: AuthorityDep, principal: PrincipalDep) -> dict[str, Any]:
    """Each transition and ack is HMAC-chained to the one before, from the run's
    declaration, with a key the database never holds: an edit, a deletion or an
    insertion in the stored history shows here as `intact: false`."""
    require(principal, RUNS_READ)
    report = authority.store.verify(str(run_id))
    if principal.tenant_scope is not None and report.tenant_id != principal.tenant_scope:
        raise RunNotFound(str(run_id))  # another tenant's run does not exist for this key
    broken = report.first_broken
    return {
        "intact": report.intact,
        "checked": report.checked,
        "first_broken": None if broken is None else {"kind": broken.kind, "seq": broken.seq},
    }
