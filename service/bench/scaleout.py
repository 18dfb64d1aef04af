"""W7: scale-out, W1 against one service process and against two, on one PostgreSQL.

A workload of its own rather than a part of W6: W6 asks what fair claims cost
as waiting runs pile up; W7 asks whether a second service process serves more
lifecycles on the same machine (issue 13, target 6), which needs its own
servers and says nothing about claims.

Two processes, two ways, each against one process (one scratch database
per way, both replicas on the same one):

- `one`: a single process, the server W1 measures;
- `workers`: `launch service … 2`, uvicorn's multi-process mode exactly as
  `rok serve --workers 2` runs it: a supervisor and two worker processes
  accepting on one socket, each with its own pool, LISTEN connection and
  sweeper. The kernel gives a new connection to whichever worker accepts
  first, and a worker woken for one accepts all that wait (uvicorn, uvloop), so
  a client that opens its keep-alive connections in a burst may find most of
  them on one worker: that is what `--workers` does with such a client, and
  the busier worker's share of the CPU says how uneven it was;
- `replicas`: two single-process servers on two ports sharing one database,
  the load client sending each lifecycle to the next replica in turn, as a
  round-robin load balancer would: what two processes serve when the load is
  split evenly, whatever the accept order.

Per repeat and per client level (8, 32), each way in turn (the order rotates
between repeats, so a drifting machine favours none), its processes started
fresh for the point and stopped after it, W1 runs as in throughput.py with
the load client on the same two cores. Besides requests/s
and server CPU per request (every process of the way), where the cores went in
the timed window: the service's processes, the load client, and the PostgreSQL
backends of that way's database. The ratio two ÷ one, for both ways, at each
level is target 6's figure.

PostgreSQL only: `rok serve` refuses --workers > 1 on SQLite (service/cli.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from service.bench import lifecycle
from service.bench.context import Context
from service.bench.cpu import DatabaseBackends, machine_busy_seconds, process_cpu_seconds, spent
from service.bench.figures import Target, ratio
from service.bench.load import Recorder, latency_summary, make_client, run_for
from service.bench.server import ServerFailed, ServerProcess, bench_settings, running, server_env
from service.bench.throughput import Measured

WORKLOAD = "W7"


@dataclass(frozen=True)
class Way:
    """How the processes are set up: `servers` servers of `workers` processes each."""

    name: str
    servers: int
    workers: int
    text: str


WAYS = (
    Way("one", 1, 1, "1 process"),
    Way("workers", 1, 2, "2 processes (rok serve --workers 2)"),
    Way("replicas", 2, 1, "2 replicas, round-robin"),
)
LISTENERS_TIMEOUT_S = 60.0
# The issue sets no number for "scale-out is real": read as a second process
# serving more than the first alone, on the same two cores.
SCALE_OUT_TARGET = Target(">", 1.0, "> 1 (a second process serves more)")


@dataclass
class Readings:
    """What the server-CPU callable read at each call: run_for calls it at the start
    and at the end of the timed window, so the last two readings bracket that window."""

    servers: list[ServerProcess]
    backends: DatabaseBackends
    at: list[float] = field(default_factory=list)
    workers: list[dict[int, float]] = field(default_factory=list)
    database: list[dict[int, float]] = field(default_factory=list)
    machine: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        self.at.append(time.perf_counter())
        self.machine.append(machine_busy_seconds())
        pids = [pid for server in self.servers for pid in server.worker_pids()]
        self.workers.append({pid: process_cpu_seconds(pid) for pid in pids})
        self.database.append(self.backends.cpu_seconds())
        return sum(server.cpu_seconds() for server in self.servers)

    def database_cores(self) -> float:
        return ratio(spent(self.database[-2], self.database[-1]), self.at[-1] - self.at[-2])

    def machine_cores(self) -> float:
        """Busy cores of the whole machine: what the service, the client and the
        database leave of it was other work (other sessions share these cores)."""
        return ratio(self.machine[-1] - self.machine[-2], self.at[-1] - self.at[-2])

    def busiest_share(self) -> float:
        """The busiest serving process's share of their CPU in the window (1/N is even)."""
        per_process = [
            self.workers[-1][pid] - self.workers[-2][pid]
            for pid in self.workers[-1].keys() & self.workers[-2].keys()
        ]
        return ratio(max(per_process, default=0.0), sum(per_process))


def listeners(database_url: str) -> int:
    """LISTEN connections on the database: one per serving process's lifespan."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = :database AND application_name = 'rok-listener'"
                    ),
                    {"database": make_url(database_url).database},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def wait_for_listeners(database_url: str, count: int) -> None:
    """/healthz answers once one worker serves; this waits until every one does."""
    deadline = time.monotonic() + LISTENERS_TIMEOUT_S
    while listeners(database_url) < count:
        if time.monotonic() > deadline:
            raise ServerFailed(f"{count} processes not all listening in {LISTENERS_TIMEOUT_S}s")
        time.sleep(0.1)


def measure(
    servers: list[ServerProcess], clients: int, readings: Readings, context: Context
) -> Measured:
    """W1's lifecycles at `clients`, each lifecycle to the next server in turn."""
    plan = context.plan

    async def go() -> Measured:
        recorder = Recorder()
        async with contextlib.AsyncExitStack() as pools:
            turns = itertools.cycle(
                [
                    await pools.enter_async_context(
                        make_client(server.base_url, clients, server.api_key)
                    )
                    for server in servers
                ]
            )

            async def one() -> None:
                await lifecycle.lifecycle(next(turns), recorder)

            result = await run_for(clients, one, recorder, plan.duration_s, plan.warmup_s, readings)
        return Measured(result, recorder)

    return asyncio.run(go())


@contextlib.contextmanager
def started(way: Way, url: str) -> Iterator[list[ServerProcess]]:
    with contextlib.ExitStack() as stack:
        env = server_env(url)
        servers = [
            stack.enter_context(running("service", env, way.workers)) for _ in range(way.servers)
        ]
        wait_for_listeners(url, way.servers * way.workers)
        yield servers


def run(context: Context) -> None:
    if context.backend != "postgres":
        context.notes.append(
            f"{context.backend}: W7 not run: scale-out is measured on PostgreSQL only "
            "(`rok serve --workers` > 1 is refused on SQLite)"
        )
        context.say("W7 not run: PostgreSQL only")
        return
    with contextlib.ExitStack() as stack:
        urls = {way.name: stack.enter_context(context.scratch(f"w7{way.name}")) for way in WAYS}
        context.record(
            WORKLOAD,
            {
                "service_env": bench_settings(server_env(urls["one"])),
                "ways": {w.name: {"servers": w.servers, "workers": w.workers} for w in WAYS},
                "server": "python -m service.bench.launch service HOST PORT WORKERS "
                "(uvicorn workers=N, as `rok serve --workers N`)",
                "replicas": "the load client sends each lifecycle to the next replica",
                "clients": list(context.plan.scale_out_clients),
                "warmup_s": context.plan.warmup_s,
                "duration_s": context.plan.duration_s,
            },
        )
        backends = {name: DatabaseBackends(url) for name, url in urls.items()}
        for reader in backends.values():
            stack.callback(reader.close)
        for repeat in context.repeats():
            order = WAYS[(repeat - 1) % len(WAYS) :] + WAYS[: (repeat - 1) % len(WAYS)]
            for clients in context.plan.scale_out_clients:
                context.say(f"W7 repeat {repeat}, {clients} clients")
                rates = {}
                for way in order:
                    # Only the way measured is up: each process keeps up to 20 idle
                    # pooled connections, and five idle processes would hold all of
                    # PostgreSQL's 100 (seen: "too many clients" as failed lifecycles).
                    with started(way, urls[way.name]) as servers:
                        readings = Readings(servers, backends[way.name])
                        point = measure(servers, clients, readings, context)
                    report_point(context, way, clients, point, readings)
                    rates[way.name] = point.requests_per_s
                for way in WAYS[1:]:
                    context.add(
                        f"w7.c{clients}.{way.name}_ratio",
                        ratio(rates[way.name], rates["one"]),
                        workload=WORKLOAD,
                        label=f"requests/s, {way.text} ÷ 1 process, at {clients} clients",
                        unit="ratio",
                        target=SCALE_OUT_TARGET,
                    )


def report_point(
    context: Context, way: Way, clients: int, point: Measured, readings: Readings
) -> None:
    add = functools.partial(context.add, workload=WORKLOAD)
    key = f"w7.{way.name}.c{clients}"
    at = f"{way.text}, {clients} clients"
    elapsed = point.result.elapsed_s
    add(f"{key}.requests_per_s", point.requests_per_s, label=f"W1 requests/s, {at}", unit="req/s")
    add(
        f"{key}.lifecycle_p50_ms",
        latency_summary(point.recorder.units)["p50_ms"],
        label=f"W1 lifecycle p50, {at}",
        unit="ms",
    )
    add(
        f"{key}.server_cpu_ms",
        point.server_cpu_ms_per_request,
        label=f"server CPU per request (all its processes), {at}",
        unit="ms",
    )
    add(
        f"{key}.server_cores",
        ratio(point.result.server_cpu_s, elapsed),
        label=f"cores used by the service's processes, {at}",
        unit="cores",
    )
    add(
        f"{key}.client_cores",
        point.client_cores,
        label=f"cores used by the load client, {at}",
        unit="cores",
    )
    add(
        f"{key}.database_cores",
        readings.database_cores(),
        label=f"cores used by PostgreSQL's backends of its database, {at}",
        unit="cores",
    )
    add(
        f"{key}.machine_cores",
        readings.machine_cores(),
        label=f"busy cores of the whole machine (of {os.cpu_count()}), {at}",
        unit="cores",
    )
    if way.servers * way.workers > 1:
        add(
            f"{key}.busiest_share",
            readings.busiest_share(),
            label=f"the busier process's share of their CPU (0.5 = even), {at}",
            unit="ratio",
        )
    add(
        f"{key}.errors",
        float(point.result.errors),
        label=f"failed lifecycles, {at}",
        unit="count",
        target=Target("<=", 0, "none"),
    )
