"""What a route needs besides its path and body, as FastAPI dependencies.

Each is an `Annotated[..., Depends(...)]` alias: a route names what it needs in
its signature (`authority: AuthorityDep`), and needing one more thing is one
more parameter there. The dependencies are `async` because none of them
blocks: resolving them costs no trip through the thread pool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.auth import Principal, principal_of
from service.api.prefer import wants_minimal
from service.authority import Authority
from service.errors import Forbidden, Unauthorized
from service.store.keys import RUNS_WRITE, WORKER


async def _authority(request: Request) -> Authority:
    authority: Authority = request.app.state.authority
    return authority


AuthorityDep = Annotated[Authority, Depends(_authority)]
"""The app's Authority (store, settings, clock, signals), set up by the lifespan."""


async def _lease_token(
    token: Annotated[
        str | None,
        Header(
            alias="X-Lease-Token",
            description="The token of the run's current lease; required once a worker claimed it.",
        ),
    ] = None,
) -> str | None:
    return token


LeaseTokenDep = Annotated[str | None, Depends(_lease_token)]
"""The X-Lease-Token header, or None: the kernel fences lifecycle moves with it."""


async def _minimal(
    request: Request,
    prefer: Annotated[
        str | None,
        Header(
            alias="Prefer",
            description="`return=minimal` (RFC 7240): answer the run's state alone "
            "(RunStateOut), without its history, contract and acks. Anything else: the "
            "whole run.",
            examples=["return=minimal"],
        ),
    ] = None,
) -> bool:
    # every Prefer header counts (RFC 7240 allows several); the declared one documents it
    return prefer is not None and wants_minimal(request.headers.getlist("prefer"))


MinimalDep = Annotated[bool, Depends(_minimal)]
"""Whether the request asked for `Prefer: return=minimal` (service.api.prefer)."""


# -- the caller -----------------------------------------------------------------


# Declares the bearer scheme in the OpenAPI (every operation with a principal lists
# it); AuthGate has already checked the key by the time this runs.
_BEARER = HTTPBearer(
    scheme_name="apiKey",
    description="An API key from `rok keys create`, sent as `Authorization: Bearer <key>`.",
    auto_error=False,
)


async def _principal(
    request: Request,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> Principal:
    principal = principal_of(request.scope)
    if principal is None:  # only public paths pass AuthGate without one
        raise Unauthorized("this endpoint needs an API key: send Authorization: Bearer <key>")
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]
"""Who is calling (AuthGate established it): scopes, tenant, and the actor it records."""


def require(principal: Principal, *scopes: str) -> None:
    """403 unless the principal holds one of `scopes` (admin holds every scope)."""
    if not any(principal.can(scope) for scope in scopes):
        needed = " or ".join(scopes)
        raise Forbidden(f"this key lacks the scope this request needs: {needed}")


def require_mover(principal: Principal, lease_token: str | None) -> None:
    """Who may move a run: runs:write drives runs no worker leases; a worker key only
    the runs it leases (with the lease's token, which the kernel then checks)."""
    if principal.can(RUNS_WRITE):
        return
    if principal.can(WORKER):
        if lease_token is None:
            raise Forbidden(
                "a worker key moves only the runs it leases: send the lease's X-Lease-Token"
            )
        return
    raise Forbidden(f"this key lacks the scope this request needs: {RUNS_WRITE} or {WORKER}")


def require_tenant(principal: Principal, tenant_id: str | None) -> str | None:
    """The tenant a request acts for: the key's own unless the key is admin."""
    if principal.tenant_scope is None:
        return tenant_id
    if tenant_id is not None and tenant_id != principal.tenant_scope:
        raise Forbidden(
            f"this key belongs to tenant {principal.tenant_scope!r} and cannot act for "
            f"tenant {tenant_id!r} (only an admin key can)"
        )
    return principal.tenant_scope
