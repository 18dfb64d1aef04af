"""The load client: asyncio + one httpx.AsyncClient with keep-alive connections.

Each simulated client is a coroutine doing one unit of work after another
(a lifecycle, or one request); all share one connection pool sized so that
every client keeps its own connection open. Latency is measured around each
request, from before it is sent until its body has been read.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

REQUEST_TIMEOUT_S = 120.0


class UnexpectedStatus(RuntimeError):
    def __init__(self, name: str, response: httpx.Response) -> None:
        super().__init__(f"{name}: HTTP {response.status_code}: {response.text[:300]}")
        self.status = response.status_code


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    return {
        "count": len(seconds),
        "p50_ms": percentile(seconds, 50) * 1000,
        "p95_ms": percentile(seconds, 95) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
    }


@dataclass
class Recorder:
    """Latencies per endpoint name, plus whole units (e.g. a lifecycle) and errors."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    units: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    enabled: bool = True

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def record(self, name: str, seconds: float) -> None:
        if self.enabled:
            self.latencies[name].append(seconds)

    def record_unit(self, seconds: float) -> None:
        if self.enabled:
            self.units.append(seconds)

    def by_endpoint(self) -> dict[str, dict[str, float]]:
        return {name: latency_summary(values) for name, values in sorted(self.latencies.items())}


def make_client(base_url: str, connections: int, api_key: str | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
        limits=httpx.Limits(
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=60.0,
        ),
        timeout=httpx.Timeout(REQUEST_TIMEOUT_S),
    )


async def timed(
    client: httpx.AsyncClient,
    recorder: Recorder,
    name: str,
    method: str,
    url: str,
    expect: int = 200,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request, record its latency under `name`, insist on `expect`."""
    started = time.perf_counter()
    response = await client.request(method, url, **kwargs)
    recorder.record(name, time.perf_counter() - started)
    if response.status_code != expect:
        raise UnexpectedStatus(name, response)
    return response


@dataclass(frozen=True)
class LoadResult:
    elapsed_s: float
    units: int
    requests: int
    errors: int
    client_cpu_s: float
    server_cpu_s: float


Unit = Callable[[], Awaitable[None]]


async def run_for(
    clients: int,
    unit: Unit,
    recorder: Recorder,
    duration_s: float,
    warmup_s: float,
    server_cpu: Callable[[], float],
) -> LoadResult:
    """`clients` coroutines repeat `unit` for `warmup_s` unrecorded, then `duration_s`.

    A unit that raises counts as an error and the client carries on, so one
    refused request is reported, not fatal. The clock stops when the last
    client finished the unit it was in when time ran out.
    """
    recorder.enabled = False
    await _repeat(clients, unit, recorder, warmup_s)
    recorder.enabled = True
    requests_before = recorder.requests
    cpu_before, server_before = _own_cpu(), server_cpu()
    started = time.perf_counter()
    units = await _repeat(clients, unit, recorder, duration_s)
    elapsed = time.perf_counter() - started
    return LoadResult(
        elapsed_s=elapsed,
        units=units,
        requests=recorder.requests - requests_before,
        errors=len(recorder.errors),
        client_cpu_s=_own_cpu() - cpu_before,
        server_cpu_s=server_cpu() - server_before,
    )


async def run_count(clients: int, unit: Unit, recorder: Recorder, total: int) -> float:
    """`clients` coroutines share `total` units; returns the elapsed seconds."""
    remaining = total

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await _guarded(unit, recorder)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


async def _repeat(clients: int, unit: Unit, recorder: Recorder, duration_s: float) -> int:
    deadline = time.perf_counter() + duration_s
    done = 0

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            if await _guarded(unit, recorder):
                done += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return done


async def _guarded(unit: Unit, recorder: Recorder) -> bool:
    try:
        await unit()
    except (UnexpectedStatus, httpx.HTTPError) as exc:
        recorder.errors.append(str(exc))
        return False
    return True


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system
