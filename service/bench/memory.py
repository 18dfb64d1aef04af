"""W5: the service's RSS after start, after N lifecycles, after another N.

A fresh server on an empty database; two batches of full lifecycles at
`memory_clients` concurrency. Memory that keeps growing in the second batch
is a leak or an unbounded cache; the first batch may grow (pools fill,
caches warm). W5 runs `memory_repeats` times (once by default): its 2 x N
lifecycles are themselves the measurement, and an RSS reading is not a noisy
timing that repeats would smooth.
"""

from __future__ import annotations

import asyncio
import functools

from service.bench import lifecycle
from service.bench.context import Context
from service.bench.figures import Target
from service.bench.load import Recorder, make_client, run_count
from service.bench.server import ServerProcess, bench_settings, running, server_env

WORKLOAD = "W5"
# The issue asks for "no growth beyond bounded caches"; read here as: the
# second batch adds at most 5% to the RSS the first batch left.
GROWTH_TARGET = Target("<=", 5.0, "≤ 5% (no growth beyond bounded caches)")


def run_batch(server: ServerProcess, clients: int, lifecycles: int) -> tuple[float, int]:
    """Run `lifecycles` lifecycles; return (lifecycles/s, errors)."""

    async def go() -> tuple[float, int]:
        recorder = Recorder(enabled=False)
        async with make_client(server.base_url, clients, server.api_key) as client:
            unit = functools.partial(lifecycle.lifecycle, client, recorder)
            elapsed = await run_count(clients, unit, recorder, lifecycles)
        return lifecycles / elapsed, len(recorder.errors)

    return asyncio.run(go())


def run(context: Context) -> None:
    plan = context.plan
    n = plan.memory_lifecycles
    add = functools.partial(context.add, workload=WORKLOAD)
    for repeat in range(1, plan.memory_repeats + 1):
        with context.scratch("w5") as url:
            env = server_env(url)
            context.record(
                WORKLOAD,
                {
                    "service_env": bench_settings(env),
                    "lifecycles_per_batch": n,
                    "clients": plan.memory_clients,
                    "repeats": plan.memory_repeats,
                },
            )
            with running("service", env) as server:
                rss_start = server.rss_kib()
                context.say(f"W5 repeat {repeat}: batch 1 of {n:,} lifecycles")
                rate_1, errors_1 = run_batch(server, plan.memory_clients, n)
                rss_1 = server.rss_kib()
                context.say(f"W5 repeat {repeat}: batch 2 of {n:,} lifecycles")
                rate_2, errors_2 = run_batch(server, plan.memory_clients, n)
                rss_2 = server.rss_kib()
        add("w5.rss_start_mib", rss_start / 1024, label="RSS after start", unit="MiB")
        add("w5.rss_first_mib", rss_1 / 1024, label=f"RSS after {n:,} lifecycles", unit="MiB")
        add("w5.rss_second_mib", rss_2 / 1024, label=f"RSS after {2 * n:,} lifecycles", unit="MiB")
        add(
            "w5.growth_second_pct",
            (rss_2 - rss_1) / rss_1 * 100,
            label=f"RSS growth over the second {n:,}",
            unit="%",
            target=GROWTH_TARGET,
        )
        add(
            "w5.lifecycles_per_s",
            (rate_1 + rate_2) / 2,
            label=f"lifecycles/s during W5 ({plan.memory_clients} clients)",
            unit="1/s",
        )
        add(
            "w5.errors",
            float(errors_1 + errors_2),
            label="failed lifecycles",
            unit="count",
            target=Target("<=", 0, "none"),
        )
