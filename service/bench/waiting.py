"""W4: many governance checks waiting at once, woken by acks arriving at random.

Per repeat, on a fresh server process: N runs are driven to GOVERNANCE_CHECK
(unrecorded); the server's RSS is read; N keep-alive connections are opened
(one GET /healthz each) and the RSS read again, so what an idle connection
costs can be told apart from what a waiting check adds; N strict checks are
sent at once, one on each of those connections; after a settle time the RSS
is read again (all N are waiting: no ack has been sent); then the 4 x N
domain acks are posted at uniformly random moments over the spread window,
while the RSS is sampled for its peak. A check's wake-up latency is the time
from the response to its run's last ack to the check's own response, both
read on the client's clock. It can be negative: the service wakes the check
as soon as the ack commits, and the check's answer may reach the client
before the ack's own response does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx

from service.bench import lifecycle
from service.bench.context import Context
from service.bench.figures import Target
from service.bench.load import (
    Recorder,
    UnexpectedStatus,
    latency_summary,
    make_client,
    timed,
)
from service.bench.server import ServerProcess, bench_settings, running, server_env
from service.model.audit import DEFAULT_DOMAIN_EXPECTATIONS

WORKLOAD = "W4"
DRIVE_CLIENTS = 32
ACK_CONNECTIONS = 64
# httpx/httpcore scan their whole pool (connections and queued requests) on
# every hand-off, so one pool of a thousand connections, or thousands of
# queued requests, makes the *client* the bottleneck (seen: the client at
# 100% CPU, the server idle, requests timing out waiting for a connection).
# Checks therefore use pools of this many connections each, and acks are
# admitted to their pool no more than ACK_CONNECTIONS at a time.
CHECKS_PER_POOL = 50
RSS_SAMPLE_S = 0.05
# Driving a thousand runs to GOVERNANCE_CHECK takes longer than the default
# finalize_run deadline (run timeout + grace = 35 s): without a longer run
# timeout the sweeper rightly fails the first runs as stale before their check.
WAITING_RUN_TIMEOUT_MS = 600_000
WAKE_TARGET = Target("<", 50.0, "< 50 ms")
RSS_TARGET = Target("<", 20.0, "< 20 KiB per waiting check")


Step = Callable[[httpx.AsyncClient, Recorder, str], Awaitable[None]]


async def _drive_all(client: httpx.AsyncClient, step: Step, ids: list[str]) -> None:
    """Apply `step` to every run, DRIVE_CLIENTS at a time, unrecorded."""
    queue = list(ids)
    quiet = Recorder(enabled=False)

    async def worker() -> None:
        while queue:
            await step(client, quiet, queue.pop())

    await asyncio.gather(*(worker() for _ in range(DRIVE_CLIENTS)))


async def _to_governance_check(client: httpx.AsyncClient, recorder: Recorder, run_id: str) -> None:
    await lifecycle.create_run_with_id(client, recorder, run_id, WAITING_RUN_TIMEOUT_MS)
    await lifecycle.start_run(client, recorder, run_id)
    await lifecycle.complete_execution(client, recorder, run_id)


async def _connect(client: httpx.AsyncClient, connections: int) -> None:
    """Open `connections` keep-alive connections at once (the checks will reuse them)."""
    quiet = Recorder(enabled=False)
    await asyncio.gather(
        *(timed(client, quiet, "GET /healthz", "GET", "/healthz") for _ in range(connections))
    )


async def _finalize_quietly(client: httpx.AsyncClient, _recorder: Recorder, run_id: str) -> None:
    """Clean-up, not measurement: a run whose strict check failed is FAILED already (409)."""
    await client.post(f"/runs/{run_id}/finalize", json={"success": True})


class Wave:
    """One repeat: N waiting checks, their acks, and what was observed."""

    def __init__(self, server: ServerProcess, checks: int, spread_s: float, settle_s: float):
        self.server = server
        self.checks = checks
        self.spread_s = spread_s
        self.settle_s = settle_s
        self.run_ids = [str(uuid.uuid4()) for _ in range(checks)]
        self.last_ack_at: dict[str, float] = {}
        self.check_done_at: dict[str, float] = {}
        self.passed = 0
        self.finished_early = 0
        self.rss_before = 0
        self.rss_connected = 0
        self.rss_waiting = 0
        self.rss_peak = 0
        self.acks = Recorder()

    async def run(self) -> None:
        async with make_client(self.server.base_url, DRIVE_CLIENTS, self.server.api_key) as driver:
            await _drive_all(driver, _to_governance_check, self.run_ids)
            self.rss_before = self.server.rss_kib()
            async with contextlib.AsyncExitStack() as pools:
                groups = [
                    self.run_ids[i : i + CHECKS_PER_POOL]
                    for i in range(0, len(self.run_ids), CHECKS_PER_POOL)
                ]
                checkers = [
                    await pools.enter_async_context(
                        make_client(self.server.base_url, len(g), self.server.api_key)
                    )
                    for g in groups
                ]
                acker = await pools.enter_async_context(
                    make_client(self.server.base_url, ACK_CONNECTIONS, self.server.api_key)
                )
                await asyncio.gather(
                    *(_connect(c, len(g)) for c, g in zip(checkers, groups, strict=True))
                )
                self.rss_connected = self.server.rss_kib()
                waits = [
                    asyncio.create_task(self._check(checker, run_id))
                    for checker, group in zip(checkers, groups, strict=True)
                    for run_id in group
                ]
                await asyncio.sleep(self.settle_s)
                self.rss_waiting = self.server.rss_kib()
                self.finished_early = len(self.check_done_at)
                sampler = asyncio.create_task(self._sample_rss())
                try:
                    await self._send_acks(acker)
                    await asyncio.gather(*waits)
                finally:
                    sampler.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sampler
            await _drive_all(driver, _finalize_quietly, self.run_ids)

    async def _check(self, client: httpx.AsyncClient, run_id: str) -> None:
        """One waiting check; a refused one is counted (as not passed), not fatal."""
        try:
            response = await lifecycle.governance_check(client, Recorder(enabled=False), run_id)
        except UnexpectedStatus:
            return
        self.check_done_at[run_id] = time.perf_counter()
        if response.json().get("passed"):
            self.passed += 1

    async def _send_acks(self, client: httpx.AsyncClient) -> None:
        started = time.perf_counter()

        admitted = asyncio.Semaphore(ACK_CONNECTIONS)

        async def one(run_id: str, domain: str, action: str, offset: float) -> None:
            await asyncio.sleep(max(0.0, started + offset - time.perf_counter()))
            async with admitted:
                await lifecycle.ack(client, self.acks, run_id, domain, action)
            done = time.perf_counter()
            self.last_ack_at[run_id] = max(self.last_ack_at.get(run_id, 0.0), done)

        await asyncio.gather(
            *(
                one(run_id, domain, action, random.uniform(0.0, self.spread_s))
                for run_id in self.run_ids
                for domain, action in DEFAULT_DOMAIN_EXPECTATIONS
            )
        )

    async def _sample_rss(self) -> None:
        while True:
            self.rss_peak = max(self.rss_peak, self.server.rss_kib())
            await asyncio.sleep(RSS_SAMPLE_S)

    def wake_latencies(self) -> list[float]:
        return [
            self.check_done_at[r] - self.last_ack_at[r]
            for r in self.run_ids
            if r in self.check_done_at and r in self.last_ack_at
        ]


def run(context: Context) -> None:
    plan = context.plan
    with context.scratch("w4") as url:
        env = server_env(url)
        context.record(
            WORKLOAD,
            {
                "service_env": bench_settings(env),
                "checks": plan.waiting_checks,
                "ack_spread_s": plan.ack_spread_s,
                "settle_s": plan.settle_s,
                "check_timeout_ms": lifecycle.CHECK_TIMEOUT_MS,
            },
        )
        for repeat in context.repeats():
            # A fresh process per repeat: memory freed by the previous wave is
            # reused without growing the RSS, which would hide what a wave costs.
            with running("service", env) as server:
                context.say(f"W4 repeat {repeat}: {plan.waiting_checks} waiting checks")
                wave = Wave(server, plan.waiting_checks, plan.ack_spread_s, plan.settle_s)
                asyncio.run(wave.run())
                report(context, wave)


def report(context: Context, wave: Wave) -> None:
    add = functools.partial(context.add, workload=WORKLOAD)
    n = wave.checks
    wake = latency_summary(wave.wake_latencies())
    add("w4.rss_before_mib", wave.rss_before / 1024, label="RSS before the checks", unit="MiB")
    add(
        "w4.rss_waiting_mib",
        wave.rss_waiting / 1024,
        label=f"RSS with {n} checks waiting",
        unit="MiB",
    )
    add("w4.rss_peak_mib", wave.rss_peak / 1024, label="RSS peak while acks arrive", unit="MiB")
    add(
        "w4.rss_per_check_kib",
        (wave.rss_waiting - wave.rss_before) / n,
        label="RSS per waiting check (with its connection)",
        unit="KiB",
        target=RSS_TARGET,
    )
    add(
        "w4.rss_per_connection_kib",
        (wave.rss_connected - wave.rss_before) / n,
        label="of which: an idle keep-alive connection",
        unit="KiB",
    )
    add(
        "w4.rss_per_wait_kib",
        (wave.rss_waiting - wave.rss_connected) / n,
        label="of which: the waiting check itself",
        unit="KiB",
    )
    add("w4.wake_p50_ms", wake["p50_ms"], label="wake-up after the last ack p50", unit="ms")
    add(
        "w4.wake_p99_ms",
        wake["p99_ms"],
        label="wake-up after the last ack p99",
        unit="ms",
        target=WAKE_TARGET,
    )
    acks = latency_summary(wave.acks.latencies[lifecycle.ACK])
    add("w4.ack_p99_ms", acks["p99_ms"], label="ack latency p99 while checks wait", unit="ms")
    add(
        "w4.passed",
        float(wave.passed),
        label=f"checks passed (of {n})",
        unit="count",
        target=Target(">=", n, f"all {n}"),
    )
    add(
        "w4.finished_before_acks",
        float(wave.finished_early),
        label="checks answered before any ack",
        unit="count",
        target=Target("<=", 0, "none"),
    )
