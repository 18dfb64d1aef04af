"""What a route needs besides its path and body, as FastAPI dependencies.

Each is an `Annotated[..., Depends(...)]` alias: a route names what it needs in
its signature (`authority: AuthorityDep`), and needing one more thing is one
more parameter there. The dependencies are `async` because none of them
blocks: resolving them costs no trip through the thread pool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from service.authority import Authority


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


# -- the caller -----------------------------------------------------------------
# Who is calling is not established yet (no authentication). When it is, it comes
# here as one more alias resolved from the request, like the two above:
#     PrincipalDep = Annotated[Principal, Depends(_principal)]
# and each route that acts for someone adds `principal: PrincipalDep` to its
# signature (and passes it on, e.g. to answer_move).
