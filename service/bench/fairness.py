"""W6: what fair claims cost, claim p50 with 0 and with 100,000 waiting runs.

The waiting runs are spread over 50 tenants, each tenant with a limit set
(PUT /limits/tenant:<id>, higher than the bench ever reaches, so every claim
still finds a run) and every tenant's lane waiting: each claim then chooses
among 50 lanes, as a loaded multi-tenant deployment's claims do. They are
bulk-loaded with the server stopped (as preload.py loads finished runs);
the claims timed are those of W3, one client, each claim finding a run.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text

from service.bench import lifecycle
from service.bench.context import Context
from service.bench.figures import ratio
from service.bench.load import latency_summary
from service.bench.scale import measure_claims
from service.bench.server import bench_settings, running, server_env
from service.store.database import Database
from service.store.limits import tenant_key
from service.store.tables import concurrency_limits, runs

WORKLOAD = "W6"
TENANTS = 50
TENANT_LIMIT = 100_000
CHUNK = 5_000


def preload_waiting(url: str, count: int, tenants: int) -> None:
    """`count` waiting runs of the claims' handler over `tenants` tenants, each tenant's
    lane waiting with a limit set; older than anything the bench creates."""
    now = datetime.now(UTC)
    database = Database(url, pool_size=1)
    try:
        for first in range(0, count, CHUNK):
            rows = [_waiting_run(number, tenants, now) for number in range(first, first + CHUNK)]
            with database.write() as conn:
                conn.execute(insert(runs), rows[: count - first])
        lanes = [
            {"key": tenant_key(_tenant(i)), "max_concurrent": TENANT_LIMIT, "waiting": True}
            for i in range(tenants)
        ]
        with database.write() as conn:
            conn.execute(insert(concurrency_limits), lanes)
        if database.is_postgres:  # what autovacuum would do to a table that grew this much
            with database.engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                conn.commit()
    finally:
        database.dispose()


def _tenant(number: int) -> str:
    return f"bench-tenant-{number}"


def _waiting_run(number: int, tenants: int, now: datetime) -> dict[str, Any]:
    created = now - timedelta(days=1) + timedelta(milliseconds=number)
    return {
        "id": str(uuid.uuid4()),
        "tenant_id": _tenant(number % tenants),
        "handler": lifecycle.HANDLER,
        "phase": "CREATED",
        "run_timeout_ms": 30_000,
        "history_length": 0,
        "available": True,
        "created_at": created,
        "updated_at": created,
        "concurrency_keys": [],
    }


def run(context: Context) -> None:
    plan = context.plan
    levels = (0, plan.fair_waiting)
    with context.scratch("w6") as url:
        env = server_env(url)
        context.record(
            WORKLOAD,
            {
                "service_env": bench_settings(env),
                "waiting_levels": list(levels),
                "tenants": TENANTS,
                "tenant_limit": TENANT_LIMIT,
                "claims_per_level": plan.claims_per_level,
            },
        )
        for level in levels:
            if level:
                context.say(f"W6 preloading {level:,} waiting runs over {TENANTS} tenants")
                preload_waiting(url, level, TENANTS)
            with running("service", env) as server:
                for repeat in context.repeats():
                    context.say(f"W6 {level:,} waiting runs, repeat {repeat}")
                    claims = latency_summary(measure_claims(server, plan.claims_per_level))
                    at = f"with {level:,} waiting runs over {TENANTS if level else 1} tenants"
                    context.add(
                        f"w6.{level}.claim_p50_ms",
                        claims["p50_ms"],
                        workload=WORKLOAD,
                        label=f"claim p50 {at}",
                        unit="ms",
                    )
        empty = context.median("w6.0.claim_p50_ms")
        loaded = context.median(f"w6.{plan.fair_waiting}.claim_p50_ms")
        if empty is not None and loaded is not None:
            context.add(
                f"w6.{plan.fair_waiting}.claim_p50_ratio",
                ratio(loaded, empty),
                workload=WORKLOAD,
                label=f"claim p50 with {plan.fair_waiting:,} waiting runs ÷ none waiting "
                "(the cost of fair claims)",
                unit="ratio",
            )
