"""W3: claim latency and W1 with 0, 100,000 and 1,000,000 finished runs stored.

The database grows between levels (bulk-loaded with the server stopped, see
preload.py); at each level a fresh server process is started, so every level
begins equally cold. The claim is timed on its own (one client, a run waiting
for every claim, so each claim returns a run), then W1 runs at 8 clients.
The target compares the largest level with the empty database.
"""

from __future__ import annotations

import asyncio
import functools

from service.bench import lifecycle
from service.bench.context import Context
from service.bench.figures import Target, ratio
from service.bench.load import Recorder, latency_summary, make_client, timed
from service.bench.preload import preload
from service.bench.server import ServerProcess, bench_settings, running, server_env
from service.bench.throughput import measure

WORKLOAD = "W3"
CLAIM_LEASE_MS = 3_600_000
SCALE_TARGET = Target("<=", 1.2, "≤ 1.2 x the empty database")


def measure_claims(server: ServerProcess, claims: int) -> list[float]:
    """Latency of `claims` claims that each find a run; the claimed runs are then failed."""

    async def go() -> list[float]:
        recorder = Recorder()
        unrecorded = Recorder(enabled=False)
        async with make_client(server.base_url, 8, server.api_key) as client:
            created = [await lifecycle.create_run(client, unrecorded) for _ in range(claims)]
            for _ in range(claims):
                await timed(
                    client,
                    recorder,
                    lifecycle.CLAIM,
                    "POST",
                    "/runs/claim",
                    json={
                        "worker_id": "bench-claimer",
                        "handlers": [lifecycle.HANDLER],
                        # longer than any level takes: the sweeper must not
                        # release or fail these runs mid-measurement
                        "lease_ms": CLAIM_LEASE_MS,
                    },
                )
            # leave no leased run behind for the sweeper to act on later
            for run_id in created:
                await client.post(
                    f"/runs/{run_id}/fail", json={"error": "bench: claimed for timing only"}
                )
        return recorder.latencies[lifecycle.CLAIM]

    return asyncio.run(go())


def run(context: Context) -> None:
    plan = context.plan
    largest = max(plan.scale_levels)
    with context.scratch("w3") as url:
        env = server_env(url)
        context.record(
            WORKLOAD,
            {
                "service_env": bench_settings(env),
                "levels": list(plan.scale_levels),
                "claims_per_level": plan.claims_per_level,
                "w1_clients": plan.scale_clients,
            },
        )
        loaded = 0
        for level in sorted(plan.scale_levels):
            context.say(f"W3 preloading {level - loaded:,} finished runs (total {level:,})")
            preload(url, loaded, level)
            loaded = level
            with running("service", env) as server:
                for repeat in context.repeats():
                    context.say(f"W3 level {level:,} repeat {repeat}")
                    measure_level(context, server, level, largest)


def measure_level(context: Context, server: ServerProcess, level: int, largest: int) -> None:
    plan = context.plan
    add = functools.partial(context.add, workload=WORKLOAD)
    name = f"w3.{level}"
    at = f"with {level:,} finished runs"
    claims = latency_summary(measure_claims(server, plan.claims_per_level))
    w1 = measure(server, plan.scale_clients, "lifecycle", context)
    whole = latency_summary(w1.recorder.units)
    add(f"{name}.claim_p50_ms", claims["p50_ms"], label=f"claim p50 {at}", unit="ms")
    add(f"{name}.claim_p99_ms", claims["p99_ms"], label=f"claim p99 {at}", unit="ms")
    clients = f"{plan.scale_clients} clients"
    add(
        f"{name}.lifecycles_per_s",
        w1.units_per_s,
        label=f"W1 lifecycles/s ({clients}) {at}",
        unit="1/s",
    )
    add(
        f"{name}.lifecycle_p50_ms",
        whole["p50_ms"],
        label=f"W1 lifecycle p50 ({clients}) {at}",
        unit="ms",
    )
    add(
        f"{name}.lifecycle_p99_ms",
        whole["p99_ms"],
        label=f"W1 lifecycle p99 ({clients}) {at}",
        unit="ms",
    )
    for endpoint, summary in w1.recorder.by_endpoint().items():
        add(
            f"{name}.endpoint.{endpoint}.p50_ms",
            summary["p50_ms"],
            label=f"{endpoint} p50 ({clients}) {at}",
            unit="ms",
            table="endpoints",
        )
    if level == min(context.plan.scale_levels):
        return
    target = SCALE_TARGET if level == largest else None
    base = f"w3.{min(context.plan.scale_levels)}"
    for figure, what in (("claim_p50_ms", "claim p50"), ("lifecycle_p50_ms", "lifecycle p50")):
        empty = context.median(f"{base}.{figure}")
        now = context.last(f"{name}.{figure}")
        if empty is not None and now is not None:
            add(
                f"{name}.{figure}_ratio",
                ratio(now, empty),
                label=f"{what} {at} ÷ empty database",
                unit="ratio",
                target=target,
            )
