"""Concurrency limits: set a key's limit (admin), read every key's limit and use.

A key is what runs list in `concurrency_keys`, or a tenant's own key
`tenant:<tenant_id>`, which every run of that tenant holds. Setting a limit
is an admin's: a tenant key could otherwise raise its own tenant's limit, and
the other keys are shared by every tenant. A tenant key reads its own
tenant's key only (the shared keys' use would tell it about other tenants).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from starlette.convertors import Convertor, register_url_convertor

from service.api.deps import AuthorityDep, PrincipalDep, require
from service.api.routes.common import READ_MANY, problems
from service.api.schemas.limits import LimitIn, LimitOut, LimitsOut
from service.store.keys import ADMIN, RUNS_READ
from service.store.limits import KeyUsage


class AnyText(Convertor[str]):
    """A path segment of any characters, `/` and line breaks included: every key reaches
    the handler, whose check names what is wrong with it (a 422), instead of no route
    matching it (a 404 the contract does not promise)."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", AnyText())

router = APIRouter(prefix="/limits", tags=["operators"])


def _usage_json(usage: KeyUsage) -> dict[str, Any]:
    return {
        "key": usage.key,
        "max_concurrent": usage.max_concurrent,
        "effective_max": usage.effective_max,
        "in_use": usage.in_use,
    }


@router.get(
    "",
    response_model=LimitsOut,
    responses=READ_MANY,
    operation_id="list_limits",
    description="Each key a run listed and each tenant's own key `tenant:<id>`: its "
    "`max_concurrent` (null: none set), the limit in force (`effective_max`, with "
    "ROK_TENANT_CONCURRENCY for tenants) and `in_use`, the leased runs holding it. Needs "
    "runs:read; a tenant's key sees its own tenant key.",
    summary="Every concurrency key: its limit and the slots in use (a tenant key: its own)",
)
def list_limits(authority: AuthorityDep, principal: PrincipalDep) -> dict[str, Any]:
    require(principal, RUNS_READ)
    usages = authority.limits.usage(principal.tenant_scope)
    return {"items": [_usage_json(u) for u in usages]}


@router.put(
    "/{key:anytext}",
    response_model=LimitOut,
    responses=problems(401, 403, 413, 422, 429),
    operation_id="set_limit",
    description="Claims then lease at most `max_concurrent` runs listing the key at once "
    "(0 holds them all); lowering it ends no lease. A slot is taken by the claim and given "
    "back by the run's end or its lease's end, in the same transaction. Admin only.",
    summary="Set how many runs holding a key may be leased at once (admin)",
)
def set_limit(
    body: LimitIn,
    authority: AuthorityDep,
    principal: PrincipalDep,
    key: str = Path(
        min_length=1,
        max_length=250,
        description="A key runs list, or tenant:<tenant_id> for a tenant's own.",
    ),
) -> dict[str, Any]:
    require(principal, ADMIN)
    return _usage_json(authority.limits.set_limit(key, body.max_concurrent, authority.clock()))
