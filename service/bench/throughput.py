"""W1: full lifecycles over REST at 1, 8 and 32 clients, against the platform limits.

Per repeat and per client level, in this order on servers that stay up for
the whole workload: the bare endpoint, the durable write, then W1, so each
ratio compares numbers measured minutes apart on the same machine and the
same server settings. Besides throughput and latency, the server's own CPU
time per request is reported: on a small machine the load client competes
with the server for cores, and CPU per request is the figure it cannot skew.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

from service.bench import lifecycle
from service.bench.context import Context
from service.bench.figures import Target, ratio
from service.bench.load import LoadResult, Recorder, latency_summary, make_client, run_for, timed
from service.bench.server import ServerProcess, bench_settings, running, server_env

WORKLOAD = "W1"
# issue 13, targets 1 and 2, at 8 clients on both backends
WRITES_TARGET = Target(">=", 0.75, "≥ 75% of durable writes/s (8 clients)")
CPU_TARGET = Target("<=", 1.3, "≤ 1.3 x the durable write's CPU per request (8 clients)")
TARGET_CLIENTS = 8


@dataclass(frozen=True)
class Measured:
    result: LoadResult
    recorder: Recorder

    @property
    def requests_per_s(self) -> float:
        return self.result.requests / self.result.elapsed_s

    @property
    def units_per_s(self) -> float:
        return self.result.units / self.result.elapsed_s

    @property
    def client_cores(self) -> float:
        """CPU the load client used, in cores: near 1.0 it, not the server, sets the pace."""
        return self.result.client_cpu_s / self.result.elapsed_s

    @property
    def server_cpu_ms_per_request(self) -> float:
        return ratio(self.result.server_cpu_s * 1000, self.result.requests)


def measure(server: ServerProcess, clients: int, unit_name: str, context: Context) -> Measured:
    """Run one load point against `server`: `unit_name` is bare, write or lifecycle."""
    plan = context.plan

    async def go() -> Measured:
        recorder = Recorder()
        async with make_client(server.base_url, clients, server.api_key) as client:

            async def one() -> None:
                if unit_name == "bare":
                    await timed(client, recorder, "GET /bare", "GET", "/bare")
                elif unit_name == "write":
                    await timed(client, recorder, "POST /write", "POST", "/write", expect=201)
                else:
                    await lifecycle.lifecycle(client, recorder)

            result = await run_for(
                clients, one, recorder, plan.duration_s, plan.warmup_s, server.cpu_seconds
            )
        return Measured(result, recorder)

    return asyncio.run(go())


def run(context: Context) -> None:
    with context.scratch("w1") as service_url, context.scratch("limits") as limits_url:
        service_env = server_env(service_url)
        limits_env = server_env(limits_url)
        context.record(
            WORKLOAD,
            {
                "service_env": bench_settings(service_env),
                "limits_env": bench_settings(limits_env),
                "clients": list(context.plan.client_levels),
                "warmup_s": context.plan.warmup_s,
                "duration_s": context.plan.duration_s,
            },
        )
        with running("limits", limits_env) as limits, running("service", service_env) as service:
            for repeat in context.repeats():
                for clients in context.plan.client_levels:
                    context.say(f"W1 repeat {repeat}, {clients} clients")
                    measure_point(context, limits, service, clients)


def measure_point(
    context: Context, limits: ServerProcess, service: ServerProcess, clients: int
) -> None:
    bare = measure(limits, clients, "bare", context)
    write = measure(limits, clients, "write", context)
    w1 = measure(service, clients, "lifecycle", context)
    level = f"c{clients}"
    at = f"at {clients} client{'s' if clients > 1 else ''}"
    add = functools.partial(context.add, workload=WORKLOAD)

    for name, point in (("bare", bare), ("write", write)):
        what = "bare endpoint" if name == "bare" else "durable write (insert+commit)"
        add(
            f"limit.{name}.{level}.requests_per_s",
            point.requests_per_s,
            label=f"limit: {what} {at}",
            unit="req/s",
        )
        latency = latency_summary(point.recorder.units or _all(point.recorder))
        add(
            f"limit.{name}.{level}.p50_ms",
            latency["p50_ms"],
            label=f"limit: {what} p50 {at}",
            unit="ms",
        )
        add(
            f"limit.{name}.{level}.p99_ms",
            latency["p99_ms"],
            label=f"limit: {what} p99 {at}",
            unit="ms",
        )
        add(
            f"limit.{name}.{level}.server_cpu_ms",
            point.server_cpu_ms_per_request,
            label=f"limit: {what} server CPU per request {at}",
            unit="ms",
        )
        add(
            f"limit.{name}.{level}.client_cores",
            point.client_cores,
            label=f"limit: {what} load-client CPU {at}",
            unit="cores",
        )

    add(f"w1.{level}.lifecycles_per_s", w1.units_per_s, label=f"lifecycles/s {at}", unit="1/s")
    add(f"w1.{level}.requests_per_s", w1.requests_per_s, label=f"requests/s {at}", unit="req/s")
    whole = latency_summary(w1.recorder.units)
    add(
        f"w1.{level}.lifecycle_p50_ms",
        whole["p50_ms"],
        label=f"lifecycle latency p50 {at}",
        unit="ms",
    )
    add(
        f"w1.{level}.lifecycle_p99_ms",
        whole["p99_ms"],
        label=f"lifecycle latency p99 {at}",
        unit="ms",
    )
    add(
        f"w1.{level}.server_cpu_ms",
        w1.server_cpu_ms_per_request,
        label=f"server CPU per request {at}",
        unit="ms",
    )
    add(
        f"w1.{level}.client_cores",
        w1.client_cores,
        label=f"load-client CPU {at}",
        unit="cores",
    )
    add(
        f"w1.{level}.errors",
        float(w1.result.errors),
        label=f"failed lifecycles {at}",
        unit="count",
        target=Target("<=", 0, "none"),
    )
    judged = clients == TARGET_CLIENTS
    add(
        f"w1.{level}.ratio_writes",
        ratio(w1.requests_per_s, write.requests_per_s),
        label=f"W1 requests/s ÷ durable writes/s {at}",
        unit="ratio",
        target=WRITES_TARGET if judged else None,
    )
    add(
        f"w1.{level}.cpu_ratio",
        ratio(w1.server_cpu_ms_per_request, write.server_cpu_ms_per_request),
        label=f"W1 server CPU per request ÷ durable write's {at}",
        unit="ratio",
        target=CPU_TARGET if judged else None,
    )
    add(
        f"w1.{level}.ratio_bare",
        ratio(w1.requests_per_s, bare.requests_per_s),
        label=f"W1 requests/s ÷ bare requests/s {at}",
        unit="ratio",
    )
    add(
        f"w1.{level}.ratio_cpu_bare",
        ratio(bare.server_cpu_ms_per_request, w1.server_cpu_ms_per_request),
        label=f"bare CPU/request ÷ W1 CPU/request {at}",
        unit="ratio",
    )
    for endpoint, summary in w1.recorder.by_endpoint().items():
        for pct in ("p50_ms", "p95_ms", "p99_ms"):
            add(
                f"w1.{level}.endpoint.{endpoint}.{pct}",
                summary[pct],
                label=f"{endpoint} {pct[:3]} {at}",
                unit="ms",
                table="endpoints",
            )


def _all(recorder: Recorder) -> list[float]:
    return [value for values in recorder.latencies.values() for value in values]
