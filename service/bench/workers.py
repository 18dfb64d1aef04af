"""W2: the WorkerPool end to end, governed and with ROK_ENABLED=false, in the same run.

The pool (no-op async handler, default contract, the three reference
domains) runs in the bench's own event loop, beside the submitting client,
as a worker process would beside its service. Per repeat, on two servers
that stay up (one with ROK_ENABLED=true, one with false, the pool set alike):

- throughput: a backlog of runs is created first (unmeasured), then the pool
  starts and the clock runs until it reported every run done;
- trickle: with the pool idle and long-polling, runs are submitted open-loop
  at a fixed rate; submit is the moment the client sends POST /runs (the run
  id is the client's, so no response has to be parsed first), start is the
  handler's first line, terminal is the pool's on_result for the run.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from service.bench import lifecycle
from service.bench.context import Context
from service.bench.figures import Target, ratio
from service.bench.load import Recorder, UnexpectedStatus, latency_summary, make_client
from service.bench.server import ServerProcess, bench_settings, running, server_env

WORKLOAD = "W2"
GOVERNANCE_TARGET = Target(">=", 0.5, "≥ 50% of ROK_ENABLED=false runs/s")
SUBMIT_CONNECTIONS = 8
DONE_TIMEOUT_S = 300.0


def pool_available() -> bool:
    try:
        module = importlib.import_module("service.worker")
    except ImportError:
        return False
    return hasattr(module, "WorkerPool")


@dataclass
class Observed:
    """Per run: when it was submitted, started executing, and reported done."""

    submitted: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    completed: int = 0
    expected: int = 0
    all_done: asyncio.Event = field(default_factory=asyncio.Event)

    async def handler(self, ctx: Any) -> None:
        self.started.setdefault(ctx.run_id, time.perf_counter())

    def on_result(self, result: Any) -> None:
        self.finished[result.run_id] = time.perf_counter()
        if result.phase == "COMPLETED":
            self.completed += 1
        if len(self.finished) >= self.expected:
            self.all_done.set()

    def delays(self, until: dict[str, float]) -> list[float]:
        return [until[r] - at for r, at in self.submitted.items() if r in until]


async def _with_pool(
    server: ServerProcess,
    rok_enabled: bool,
    concurrency: int,
    observed: Observed,
    body: Callable[[], Awaitable[None]],
) -> float:
    """Run the pool while `body()` runs, until every expected run is done; return seconds."""
    from service.domains.defaults import reference_domains
    from service.worker import WorkerPool

    pool = WorkerPool(
        server.base_url,
        {lifecycle.HANDLER: observed.handler},
        domains=reference_domains(),
        api_key=server.api_key,
        concurrency=concurrency,
        rok_enabled=rok_enabled,
        on_result=observed.on_result,
        drain_timeout_s=5.0,
    )
    serving = asyncio.create_task(pool.serve())
    started = time.perf_counter()
    try:
        await body()
        await asyncio.wait_for(observed.all_done.wait(), DONE_TIMEOUT_S)
        return time.perf_counter() - started
    finally:
        pool.stop(0)
        await serving


async def _create(
    client: httpx.AsyncClient, recorder: Recorder, observed: Observed, run_id: str
) -> None:
    observed.submitted[run_id] = time.perf_counter()
    await lifecycle.create_run_with_id(client, recorder, run_id)


async def throughput(
    server: ServerProcess, rok_enabled: bool, runs: int, concurrency: int
) -> tuple[float, Observed]:
    observed = Observed(expected=runs)
    quiet = Recorder(enabled=False)
    async with make_client(server.base_url, SUBMIT_CONNECTIONS, server.api_key) as client:
        queue = [str(uuid.uuid4()) for _ in range(runs)]

        async def submitter() -> None:
            while queue:
                await _create(client, quiet, observed, queue.pop())

        await asyncio.gather(*(submitter() for _ in range(SUBMIT_CONNECTIONS)))

    async def nothing() -> None:
        return None

    elapsed = await _with_pool(server, rok_enabled, concurrency, observed, nothing)
    return runs / elapsed, observed


async def trickle(
    server: ServerProcess, rok_enabled: bool, runs: int, rate: float, concurrency: int
) -> Observed:
    observed = Observed(expected=runs)
    quiet = Recorder(enabled=False)

    async def submit_all() -> None:
        async with make_client(server.base_url, SUBMIT_CONNECTIONS * 4, server.api_key) as client:
            await asyncio.sleep(0.5)  # the pool's slots are long-polling by now
            begin = time.perf_counter()
            sends = []
            for i in range(runs):
                await asyncio.sleep(max(0.0, begin + i / rate - time.perf_counter()))
                sends.append(
                    asyncio.create_task(_create(client, quiet, observed, str(uuid.uuid4())))
                )
            await asyncio.gather(*sends)

    await _with_pool(server, rok_enabled, concurrency, observed, submit_all)
    return observed


def run(context: Context) -> None:
    if not pool_available():
        context.notes.append(f"{context.backend}: W2 not run: WorkerPool unavailable")
        context.say("W2 not run: WorkerPool unavailable")
        return
    plan = context.plan
    logging.getLogger("rok").setLevel(logging.ERROR)
    with context.scratch("w2") as governed_url, context.scratch("w2off") as ungoverned_url:
        governed_env = server_env(governed_url, {"ROK_ENABLED": "true"})
        ungoverned_env = server_env(ungoverned_url, {"ROK_ENABLED": "false"})
        context.record(
            WORKLOAD,
            {
                "governed_env": bench_settings(governed_env),
                "ungoverned_env": bench_settings(ungoverned_env),
                "pool": "service.worker.WorkerPool, no-op async handler, reference domains",
                "concurrency": plan.pool_concurrency,
                "runs_per_throughput_window": plan.w2_runs,
                "trickle_rate_per_s": plan.trickle_rate_per_s,
                "trickle_runs": plan.trickle_runs,
            },
        )
        with (
            running("service", governed_env) as governed,
            running("service", ungoverned_env) as ungoverned,
        ):
            for repeat in context.repeats():
                context.say(f"W2 repeat {repeat}")
                measure_repeat(context, governed, ungoverned)


def measure_repeat(context: Context, governed: ServerProcess, ungoverned: ServerProcess) -> None:
    plan = context.plan
    add = functools.partial(context.add, workload=WORKLOAD)
    rates: dict[str, float] = {}
    for mode, server, enabled in (("governed", governed, True), ("ungoverned", ungoverned, False)):
        what = "governed" if enabled else "ROK_ENABLED=false"
        try:
            rate, observed = asyncio.run(
                throughput(server, enabled, plan.w2_runs, plan.pool_concurrency)
            )
        except (TimeoutError, UnexpectedStatus) as exc:
            context.notes.append(f"{context.backend}: W2 {mode} throughput failed: {exc!r}")
            rate, observed = float("nan"), Observed()
        rates[mode] = rate
        add(
            f"w2.{mode}.runs_per_s",
            rate,
            label=f"{what} runs/s (pool concurrency {plan.pool_concurrency})",
            unit="1/s",
        )
        add(
            f"w2.{mode}.not_completed",
            float(plan.w2_runs - observed.completed),
            label=f"{what}: runs not COMPLETED (of {plan.w2_runs})",
            unit="count",
            target=Target("<=", 0, "none"),
        )
        observed = asyncio.run(
            trickle(
                server, enabled, plan.trickle_runs, plan.trickle_rate_per_s, plan.pool_concurrency
            )
        )
        rate_text = f"{plan.trickle_rate_per_s:g} runs/s"
        for name, until in (("start", observed.started), ("terminal", observed.finished)):
            summary = latency_summary(observed.delays(until))
            for pct in ("p50_ms", "p99_ms"):
                add(
                    f"w2.{mode}.trickle.submit_to_{name}_{pct}",
                    summary[pct],
                    label=f"{what}: submit→{name} {pct[:3]} at {rate_text}",
                    unit="ms",
                )
    add(
        "w2.ratio",
        ratio(rates["governed"], rates["ungoverned"]),
        label="governed runs/s ÷ ROK_ENABLED=false runs/s",
        unit="ratio",
        target=GOVERNANCE_TARGET,
    )
