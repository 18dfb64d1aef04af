"""The /runs API, one router per resource (all under the `runs` tag).

runs: create, list, get · leases: claim, heartbeat · moves: the lifecycle
moves · acks: domain acks · governance: the check and the reconciliation · verify:
the sealed history recomputed · limits: concurrency limits
(a router of its own, under /limits).
"""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routes import acks, governance, leases, limits, moves, runs, verify

ROUTERS: tuple[APIRouter, ...] = (
    runs.router,
    leases.router,
    moves.router,
    acks.router,
    governance.router,
    verify.router,
    limits.router,
)
