"""The /runs API, one router per resource (all under the `runs` tag).

runs: create, list, get · leases: claim, heartbeat · moves: the lifecycle
moves · control: cancel, approve, reject, release · acks: domain acks ·
governance: the check and the reconciliation · verify: the sealed history
recomputed · events: the alerts and their delivery · owed (under /domains): the
feed of runs that still owe a domain its acks · limits: concurrency
limits (under /limits).
"""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routes import (
    acks,
    control,
    events,
    governance,
    leases,
    limits,
    moves,
    owed,
    runs,
    verify,
)

ROUTERS: tuple[APIRouter, ...] = (
    runs.router,
    leases.router,
    moves.router,
    control.router,
    acks.router,
    governance.router,
    verify.router,
    events.router,
    owed.router,
    limits.router,
)
