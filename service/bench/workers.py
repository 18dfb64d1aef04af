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
  handler's first line, terminal is the pool's on_result for the run;
- idle: runs submitted one at a time, each once the previous one ended, so
  every run finds all the pool's slots long-polling (issue 13's submit→start
  target is for an idle pool; at 20 runs/s on a busy machine the pool is not).

Governed runs/s is also divided by the durable write's limit at 8 clients:
W1's, when W1 ran first in this bench, else measured here on a limits server
every repeat. With --peers, a Celery-on-Redis loop runs in each repeat after
rok's windows (service.bench.peers).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from service.bench import lifecycle, peers
from service.bench.context import Context
from service.bench.figures import Target, ratio
from service.bench.load import Recorder, UnexpectedStatus, latency_summary, make_client
from service.bench.server import ServerProcess, bench_settings, running, server_env
from service.bench.throughput import measure as measure_load

WORKLOAD = "W2"
# issue 13, targets 3 and 4
GOVERNANCE_TARGETS = {
    "sqlite": Target(">=", 0.6, "≥ 60% of ROK_ENABLED=false runs/s"),
    "postgres": Target(">=", 0.5, "≥ 50% of ROK_ENABLED=false runs/s"),
}
WRITES_TARGET = Target(">=", 0.2, "≥ 20% of durable writes/s (8 clients)")
START_TARGET = Target("<=", 10.0, "≤ 10 ms (idle pool)")
# the durable write at 8 clients: W1's when W1 ran in this bench, else W2's own
LIMIT_CLIENTS = 8
LIMIT_KEY = f"limit.write.c{LIMIT_CLIENTS}.requests_per_s"
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
    progress: asyncio.Event = field(default_factory=asyncio.Event)  # set at every result

    async def handler(self, ctx: Any) -> None:
        self.started.setdefault(ctx.run_id, time.perf_counter())

    def on_result(self, result: Any) -> None:
        self.finished[result.run_id] = time.perf_counter()
        if result.phase == "COMPLETED":
            self.completed += 1
        self.progress.set()
        if len(self.finished) >= self.expected:
            self.all_done.set()

    async def until_finished(self, run_id: str) -> None:
        while run_id not in self.finished:
            self.progress.clear()
            await self.progress.wait()

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


async def idle(server: ServerProcess, rok_enabled: bool, runs: int, concurrency: int) -> Observed:
    """One run at a time, each submitted once the previous one ended: every run
    finds the pool idle, its slots long-polling (issue 13's submit→start target)."""
    observed = Observed(expected=runs)
    quiet = Recorder(enabled=False)

    async def one_by_one() -> None:
        async with make_client(server.base_url, 1, server.api_key) as client:
            await asyncio.sleep(0.5)  # the pool's slots are long-polling by now
            for _ in range(runs):
                run_id = str(uuid.uuid4())
                await _create(client, quiet, observed, run_id)
                await asyncio.wait_for(observed.until_finished(run_id), DONE_TIMEOUT_S)

    await _with_pool(server, rok_enabled, concurrency, observed, one_by_one)
    return observed


def run(context: Context) -> None:
    if not pool_available():
        context.notes.append(f"{context.backend}: W2 not run: WorkerPool unavailable")
        context.say("W2 not run: WorkerPool unavailable")
        return
    plan = context.plan
    logging.getLogger("rok").setLevel(logging.ERROR)
    # W1 measured the durable write already (it runs first): its median is the
    # denominator; without W1 in this bench, W2 measures it itself, every repeat
    own_limit = context.median(LIMIT_KEY) is None
    with contextlib.ExitStack() as stack:
        governed_url = stack.enter_context(context.scratch("w2"))
        ungoverned_url = stack.enter_context(context.scratch("w2off"))
        governed_env = server_env(governed_url, {"ROK_ENABLED": "true"})
        ungoverned_env = server_env(ungoverned_url, {"ROK_ENABLED": "false"})
        settings: dict[str, Any] = {
            "governed_env": bench_settings(governed_env),
            "ungoverned_env": bench_settings(ungoverned_env),
            "pool": "service.worker.WorkerPool, no-op async handler, reference domains",
            "concurrency": plan.pool_concurrency,
            "runs_per_throughput_window": plan.w2_runs,
            "trickle_rate_per_s": plan.trickle_rate_per_s,
            "trickle_runs": plan.trickle_runs,
            "idle_runs": plan.idle_runs,
            "durable_write_limit": "measured in W2" if own_limit else "W1's (median)",
        }
        if context.redis_url is not None:
            settings["peer"] = {
                "what": "Celery on Redis, a no-op task, results in Redis",
                "pool": peers.POOL,
                "concurrency": plan.pool_concurrency,
                "tasks_per_window": plan.w2_runs,
            }
        context.record(WORKLOAD, settings)
        governed = stack.enter_context(running("service", governed_env))
        ungoverned = stack.enter_context(running("service", ungoverned_env))
        limits = None
        if own_limit:
            limits_url = stack.enter_context(context.scratch("w2limits"))
            limits = stack.enter_context(running("limits", server_env(limits_url)))
        peer = None
        if context.redis_url is not None:
            context.say("W2: starting the Celery peer")
            peer = stack.enter_context(peers.CeleryPeer(context.redis_url, plan.pool_concurrency))
        for repeat in context.repeats():
            context.say(f"W2 repeat {repeat}")
            measure_repeat(context, governed, ungoverned, limits, peer)


def measure_repeat(
    context: Context,
    governed: ServerProcess,
    ungoverned: ServerProcess,
    limits: ServerProcess | None = None,
    peer: peers.CeleryPeer | None = None,
) -> None:
    """`limits`: measure the durable write here (W1 did not); `peer`: run Celery too."""
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
        trickled = asyncio.run(
            trickle(
                server, enabled, plan.trickle_runs, plan.trickle_rate_per_s, plan.pool_concurrency
            )
        )
        alone = asyncio.run(idle(server, enabled, plan.idle_runs, plan.pool_concurrency))
        for kind, observed, how in (
            ("trickle", trickled, f"at {plan.trickle_rate_per_s:g} runs/s"),
            ("idle", alone, "one at a time (idle pool)"),
        ):
            for name, until in (("start", observed.started), ("terminal", observed.finished)):
                summary = latency_summary(observed.delays(until))
                for pct in ("p50_ms", "p99_ms"):
                    judged = enabled and kind == "idle" and name == "start" and pct == "p50_ms"
                    add(
                        f"w2.{mode}.{kind}.submit_to_{name}_{pct}",
                        summary[pct],
                        label=f"{what}: submit→{name} {pct[:3]} {how}",
                        unit="ms",
                        target=START_TARGET if judged else None,
                    )
    add(
        "w2.ratio",
        ratio(rates["governed"], rates["ungoverned"]),
        label="governed runs/s ÷ ROK_ENABLED=false runs/s",
        unit="ratio",
        target=GOVERNANCE_TARGETS.get(context.backend),
    )
    limit = durable_write_limit(context, limits)
    add(
        "w2.ratio_writes",
        ratio(rates["governed"], limit),
        label=f"governed runs/s ÷ durable writes/s at {LIMIT_CLIENTS} clients",
        unit="ratio",
        target=WRITES_TARGET,
    )
    if peer is not None:
        measure_peer(context, peer, rates["governed"])


def durable_write_limit(context: Context, limits: ServerProcess | None) -> float:
    """W1's median durable writes/s at 8 clients, or one measured now on `limits`."""
    if limits is None:
        return context.median(LIMIT_KEY) or float("nan")
    point = measure_load(limits, LIMIT_CLIENTS, "write", context)
    context.add(
        LIMIT_KEY,
        point.requests_per_s,
        workload=WORKLOAD,
        label=f"limit: durable write (insert+commit) at {LIMIT_CLIENTS} clients",
        unit="req/s",
    )
    return point.requests_per_s


def measure_peer(context: Context, peer: peers.CeleryPeer, governed_rate: float) -> None:
    """The Celery loop for as many tasks as W2's window had runs, and the ratio."""
    plan = context.plan
    context.say(f"W2: Celery peer, {plan.w2_runs} tasks")
    rate = peer.measure(plan.w2_runs)
    context.add(
        "celery.runs_per_s",
        rate,
        workload=WORKLOAD,
        label=f"peer: Celery on Redis no-op tasks/s ({peers.POOL} pool, "
        f"concurrency {plan.pool_concurrency})",
        unit="1/s",
    )
    context.add(
        "w2.ratio_celery",
        ratio(governed_rate, rate),
        workload=WORKLOAD,
        label="governed rok runs/s ÷ Celery runs/s",
        unit="ratio",
    )
