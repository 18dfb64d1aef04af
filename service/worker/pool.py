"""WorkerPool: claims runs over HTTP and drives each through its lifecycle.

    pool = WorkerPool("http://127.0.0.1:8000", {"summarize": summarize}, concurrency=8)
    pool.run()                      # blocks; SIGTERM/SIGINT drain it

One asyncio loop, `concurrency` slots. Whenever a slot is free, the pool
long-polls POST /runs/claim (wait_ms, so an idle pool wakes within
milliseconds of a new run instead of after a poll delay) and hands the run
to a `RunDriver` in that slot. Stopping stops
claiming; runs in hand get `drain_timeout_s` to finish, then are failed with
"worker shutting down"; a second SIGTERM/SIGINT fails them at once.

An in-flight long-poll is let to return rather than cancelled: the claim
endpoint does not notice a client that hung up and still leases it a run,
which would then wait for the sweeper. Only a claim still pending well past its wait_ms
(the service is down) is abandoned, so stopping never waits for an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from service.config import Settings
from service.telemetry import Tracing, current_tracing
from service.worker.api_errors import ApiError, ServiceUnavailable
from service.worker.authorizer import Authorizer, grant_all
from service.worker.client import RokClient
from service.worker.context import RunContext
from service.worker.driver import DriverSettings, RunDriver
from service.worker.execution import Handler
from service.worker.hooks import Domain
from service.worker.outcome import WorkerShuttingDown
from service.worker.results import RunResult
from service.worker.startup import refuse_a_governing_service
from service.worker.tracing import continuing
from service.worker.wire import Claim

log = logging.getLogger("rok.worker")

Until = int | Callable[[RunResult], bool]
ResultCallback = Callable[[RunResult], None]

# After the drain timeout, slots get this long to fail what they hold and return.
STOP_GRACE_S = 30.0
# A long-poll claim answers within its wait_ms; past it by this much, it is abandoned on stop.
CLAIM_ANSWER_S = 2.0
KEPT_RESULTS = 10_000


def default_worker_id() -> str:
    return f"{socket.gethostname()}/pid-{os.getpid()}/{uuid.uuid4().hex[:6]}"


class WorkerPool:
    def __init__(
        self,
        url: str,
        handlers: Mapping[str, Handler],
        concurrency: int = 4,
        worker_id: str | None = None,
        lease_ms: int = 15_000,
        authorizer: Authorizer | None = None,
        domains: Sequence[Domain] = (),
        rok_enabled: bool | None = None,
        *,
        claim_wait_ms: int = 2_000,
        governance_timeout_ms: int | None = None,
        require_all_acks: bool = False,
        domain_timeout_ms: int = 3_000,
        drain_timeout_s: float = 30.0,
        on_result: ResultCallback | None = None,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """`domains`: the hooks every run goes through, in this order; none by default.

        The pool runs exactly the domains it is given: which ones a deployment
        runs (`rok worker` and the demo: the reference domains) is decided
        where the pool is built, so the worker depends on no implementation.
        `rok_enabled=None` reads ROK_ENABLED; `governance_timeout_ms=None` lets
        the service use its ROK_GOVERNANCE_TIMEOUT_MS; `api_key=None` reads
        ROK_API_KEY (unset: no key, for a service with ROK_AUTH=off). The key
        needs the scopes `worker`, `runs:read` and `acks:<domain>` for each
        domain run here. `transport` replaces the HTTP transport (tests). `tracing`:
        else the process's (service.telemetry.install_tracing); each run continues its trace.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not handlers:
            raise ValueError("a WorkerPool needs at least one handler")
        self.url = url
        self.handlers = dict(handlers)
        self.concurrency = concurrency
        self.worker_id = worker_id or default_worker_id()
        self.domains = list(domains)
        self.authorizer = authorizer or grant_all
        self.claim_wait_ms = claim_wait_ms
        self.drain_timeout_s = drain_timeout_s
        self.on_result = on_result
        self.api_key = api_key if api_key is not None else os.environ.get("ROK_API_KEY") or None
        self.transport = transport
        self.tracing = tracing or current_tracing()
        self.settings = DriverSettings(
            worker_id=self.worker_id,
            lease_ms=lease_ms,
            rok_enabled=Settings.from_env().rok_enabled if rok_enabled is None else rok_enabled,
            governance_timeout_ms=governance_timeout_ms,
            require_all_acks=require_all_acks,
            domain_timeout_s=domain_timeout_ms / 1000,
            authorize_timeout_s=domain_timeout_ms / 1000,
        )
        self.results: deque[RunResult] = deque(maxlen=KEPT_RESULTS)
        self.handled = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._drain_expired: asyncio.Event | None = None
        self._drain_s = 0.0
        self._drain_timer: asyncio.TimerHandle | None = None
        self._claim_timer: asyncio.TimerHandle | None = None
        self._claim: asyncio.Future[Claim | None] | None = None
        self._claimer: asyncio.Task[None] | None = None
        self._free_slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._active: set[RunContext] = set()
        self._until: tuple[list[RunResult], Callable[[RunResult], bool]] | None = None
        self._started = threading.Event()
        self._stop_asked: float | None = None

    # -- blocking entry points -----------------------------------------------------------

    def run(self, timeout_s: float | None = None) -> None:
        """Serve until stopped (SIGTERM/SIGINT in the main thread, stop(), timeout_s)."""
        asyncio.run(self._serve_blocking(timeout_s))

    def run_until(self, until: Until, timeout_s: float | None = None) -> list[RunResult]:
        """Serve until `until` runs were handled (or the predicate holds for one); return them."""
        collected: list[RunResult] = []
        if isinstance(until, int):
            target = until
            self._until = (collected, lambda _result: len(collected) >= target)
        else:
            self._until = (collected, until)
        try:
            self.run(timeout_s)
        finally:
            self._until = None
        return collected

    @contextlib.contextmanager
    def running(self, drain_timeout_s: float | None = None) -> Iterator[WorkerPool]:
        """Serve in a background thread for the length of a `with` block."""
        thread = threading.Thread(target=self.run, name=f"rok-pool-{self.worker_id}", daemon=True)
        thread.start()
        self._started.wait(timeout=10)
        try:
            yield self
        finally:
            self.stop(drain_timeout_s)
            thread.join()

    def stop(self, drain_timeout_s: float | None = None) -> None:
        """Stop claiming; running handlers get `drain_timeout_s` to finish. Thread-safe."""
        drain = self.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        loop = self._loop
        if loop is None or not self._started.is_set():
            self._stop_asked = drain  # serve() honours it when it starts
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(self._begin_stop, drain)

    # -- the loop ---------------------------------------------------------------------------

    async def serve(self) -> None:
        """Serve until stop(); then drain. The async entry point."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._drain_expired = asyncio.Event()
        self._claim = self._claimer = None
        self._running = set()
        self._started.set()
        if self._stop_asked is not None:
            self._begin_stop(self._stop_asked)
            self._stop_asked = None
        connections = self.concurrency * 6 + 8
        async with RokClient(
            self.url,
            max_connections=connections,
            api_key=self.api_key,
            transport=self.transport,
            tracing=self.tracing,
        ) as client:
            if not self.settings.rok_enabled:  # GovernedServiceError against one that governs
                await refuse_a_governing_service(client, self.url, self._stopping)
            self._free_slots = asyncio.Semaphore(self.concurrency)
            self._claimer = asyncio.create_task(self._claim_loop(client), name="rok-claimer")
            await self._stopping.wait()
            await self._drain()
        log.info("worker %s stopped after %d runs", self.worker_id, self.handled)

    async def _serve_blocking(self, timeout_s: float | None) -> None:
        loop = asyncio.get_running_loop()
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self._on_signal, signum)
        timer = loop.call_later(timeout_s, self.stop) if timeout_s is not None else None
        try:
            await self.serve()
        finally:
            if timer is not None:
                timer.cancel()
            if in_main:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)
            self._started.clear()
            self._loop = None

    async def _claim_loop(self, client: RokClient) -> None:
        """Claim whenever a slot is free, one long-poll at a time.

        One claimer per pool rather than one per slot: an idle pool costs the
        service one waiting claim, and a new run wakes one claim per pool
        instead of a herd racing for it.
        """
        assert self._stopping is not None and self._free_slots is not None
        while not self._stopping.is_set():
            await self._free_slots.acquire()  # _begin_stop cancels us while we wait here
            claiming = asyncio.ensure_future(
                client.claim(
                    self.worker_id, self.settings.lease_ms, self.handlers, self.claim_wait_ms
                )
            )
            self._claim = claiming
            try:
                claim = await claiming
            except asyncio.CancelledError:
                self._free_slots.release()
                if claiming.cancelled() and self._stopping.is_set():
                    return  # _abandon_claim: the service did not answer in time
                raise
            except (ApiError, ServiceUnavailable) as exc:
                self._free_slots.release()
                log.error("claim refused: %s; trying again in a second", exc)
                await asyncio.sleep(1.0)
                continue
            finally:
                self._claim = None
            if claim is None:
                self._free_slots.release()
                continue
            task = asyncio.create_task(
                self._run_in_slot(client, claim), name=f"rok-run-{claim.run_id[:8]}"
            )
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_in_slot(self, client: RokClient, claim: Claim) -> None:
        assert self._free_slots is not None
        try:
            with continuing(claim.run, self.tracing):  # its calls carry the run's traceparent
                await self._handle(client, claim)
        except Exception:  # the driver never raises; this is a last line of defence
            log.exception("run %s: unexpected error in the pool", claim.run_id)
        finally:
            self._free_slots.release()

    async def _handle(self, client: RokClient, claim: Claim) -> None:
        name = str(claim.run.get("handler") or "")
        handler = self.handlers.get(name)
        if handler is None:  # claims ask only for our handlers: a service bug if it happens
            log.error("claimed run %s of unknown handler %r; failing it", claim.run_id, name)
            with contextlib.suppress(Exception):
                await client.fail(
                    claim.run_id, f"no handler {name!r} in worker {self.worker_id}", claim.token
                )
            return
        driver = RunDriver(client, claim, handler, self.domains, self.authorizer, self.settings)
        self._active.add(driver.ctx)
        if self._drain_expired is not None and self._drain_expired.is_set():
            driver.ctx.stop(self._shutdown_reason())
        try:
            result = await driver.drive()
        finally:
            self._active.discard(driver.ctx)
        self._record(result)

    def _record(self, result: RunResult) -> None:
        self.handled += 1
        self.results.append(result)
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                log.exception("on_result callback failed")
        if self._until is not None:
            collected, done = self._until
            collected.append(result)
            if done(result):
                self._begin_stop(self.drain_timeout_s)

    # -- stopping ---------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        already = self._stopping is not None and self._stopping.is_set()
        name = signal.Signals(signum).name
        if already:
            log.warning("%s again: failing running handlers now", name)
            self._expire_drain()
        else:
            log.warning("%s: draining (up to %.0fs)", name, self.drain_timeout_s)
            self._begin_stop(self.drain_timeout_s)

    def _begin_stop(self, drain_s: float) -> None:
        assert self._loop is not None and self._stopping is not None
        if self._stopping.is_set():
            if drain_s <= 0:
                self._expire_drain()
            return
        self._stopping.set()
        self._drain_s = drain_s
        self._drain_timer = self._loop.call_later(drain_s, self._expire_drain)
        if self._claim is None and self._claimer is not None:
            self._claimer.cancel()  # waiting for a free slot or backing off: nothing in flight
        grace = self.claim_wait_ms / 1000 + CLAIM_ANSWER_S
        self._claim_timer = self._loop.call_later(grace, self._abandon_claim)

    def _abandon_claim(self) -> None:
        """Cancel a claim still pending well after its long-poll should have answered.

        It is retrying against a service that is down (or stuck): waiting for
        it would make stopping take as long as the outage. Were the service to
        answer it after all, its run would be leased to nobody, and the
        sweeper would take it back when the lease expires.
        """
        if self._claim is not None:
            self._claim.cancel()

    def _expire_drain(self) -> None:
        assert self._drain_expired is not None
        if self._drain_expired.is_set():
            return
        self._drain_expired.set()
        reason = self._shutdown_reason()
        for ctx in list(self._active):
            ctx.stop(reason)

    def _shutdown_reason(self) -> WorkerShuttingDown:
        return WorkerShuttingDown(
            f"worker {self.worker_id} stopped and its drain timeout "
            f"({self._drain_s:g}s) passed before the handler finished"
        )

    async def _drain(self) -> None:
        assert self._drain_expired is not None
        expired: asyncio.Future[bool] = asyncio.ensure_future(self._drain_expired.wait())
        while not expired.done():
            busy = self._busy()
            if not busy:
                break
            waiting: set[asyncio.Future[Any]] = {*busy, expired}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        expired.cancel()
        busy = self._busy()
        if busy:  # the drain timeout passed: handlers were stopped, their runs are being failed
            grace = STOP_GRACE_S + self.claim_wait_ms / 1000
            _, still = await asyncio.wait(busy, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*busy, return_exceptions=True)
        for timer in (self._drain_timer, self._claim_timer):
            if timer is not None:
                timer.cancel()

    def _busy(self) -> set[asyncio.Task[None]]:
        tasks = {*self._running}
        if self._claimer is not None:
            tasks.add(self._claimer)
        return {task for task in tasks if not task.done()}
