"""A governance domain as a process of its own: it long-polls the owed feed and acks.

`DomainFeed` drives one `Domain` (the same objects the WorkerPool runs, with
the same decision logic) from `GET /domains/{name}/owed` instead of from a
worker's lifecycle: for each run listed it reads the run, rebuilds what the
domain's hooks read (a `RunContext`, the recorded `Outcome`) and calls the
hooks the pool would call at the end of an execution; their acks go through
the same `AckChannel`, which sends only what the run still owes.

What a remote domain can know, compared with one inside the worker pool:
- It acts once the execution ended (the feed's GOVERNANCE_CHECK phase): the
  outcome, the error and the execution's start and end are in the run's
  history; that is all the reference domains need to give their evidence
  (incidents: open one for a failed run, or "looked, nothing to open";
  policies: judge the recorded outcome and duration; traces: the execution's
  root span).
- It cannot veto or shape a run: `authorize` (a policy denial) and `limits`
  (budgets) act inside the worker before and while the handler runs. A
  policies domain that must deny runs stays in the pool.
- It never sees what only the handler's process holds: `ctx.step` and
  `ctx.charge` (so no step spans, no cost, no step or cost violations beyond
  the error the run recorded) and a denial (a denied run fails at once and
  leaves the feed; the pool's domains report it in `on_denied`).
- It races the worker's governance check: it must ack within the check's
  wait (ROK_GOVERNANCE_TIMEOUT_MS); the feed wakes it in the transaction
  that moves the run into GOVERNANCE_CHECK, so that is milliseconds, not a
  poll interval.
- One process per domain: two consumers of one domain would both ack a run
  (the second ack is drift). The pool must not run the same domain too.

A run the domain saw and did not ack (its hook failed to, or hung) stays on
the feed until the governance check is recorded; the loop does not take it up
again, and when a poll lists only such runs it waits `idle_s` before the
next, instead of asking the service again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import OrderedDict
from datetime import datetime

from service.worker.acks import AckChannel, Pair
from service.worker.api_errors import ApiError
from service.worker.client import RokClient
from service.worker.context import RunContext
from service.worker.dispatch import DomainDispatcher
from service.worker.hooks import Domain
from service.worker.outcome import Outcome
from service.worker.wire import Run

log = logging.getLogger("rok.worker.domain_feed")

ENDED = "GOVERNANCE_CHECK"
"""The phase a remote domain acts in: the execution ended, no verdict yet."""
MAX_WAIT_MS = 60_000
REMEMBERED = 10_000
"""Runs remembered as handled (a bounded memory; older ones have left the feed)."""


def feed_domains(domain: Domain) -> list[str]:
    """The feeds a domain reads: the domains of the pairs it acks (traces acks `logs`)."""
    names = {name for pairs in domain.owes.values() for name, _ in pairs}
    return sorted(names) or [domain.name]


def remote_worker_id(domain: Domain) -> str:
    """Who acted, as the acks' provenance shows it: this feed process."""
    return f"{domain.name}-feed@{socket.gethostname()}/pid-{os.getpid()}/{uuid.uuid4().hex[:6]}"


def remote_context(run: Run, worker_id: str) -> RunContext:
    """What the hooks read, as far as the run's record tells it: no steps, no cost."""
    ctx = RunContext(run, worker_id)
    for entry in run.get("history") or []:
        if entry.get("to") == "EXECUTING" and entry.get("from") != "EXECUTING":
            ctx.started_at = datetime.fromisoformat(entry["at"])
        elif entry.get("to") == ENDED:
            ctx.ended_at = datetime.fromisoformat(entry["at"])
    return ctx


class DomainFeed:
    def __init__(
        self,
        client: RokClient,
        domain: Domain,
        *,
        worker_id: str | None = None,
        limit: int = 50,
        wait_ms: int = 30_000,
        concurrency: int = 8,
        hook_timeout_s: float = 30.0,
        idle_s: float = 1.0,
    ) -> None:
        if not 0 <= wait_ms <= MAX_WAIT_MS:
            raise ValueError(f"wait_ms must be 0 … {MAX_WAIT_MS}, not {wait_ms}")
        self.client = client
        self.domain = domain
        self.worker_id = worker_id or remote_worker_id(domain)
        self.limit = limit
        self.wait_ms = wait_ms
        self.hook_timeout_s = hook_timeout_s
        self.idle_s = idle_s
        self._slots = asyncio.Semaphore(concurrency)
        self._handled: OrderedDict[str, None] = OrderedDict()
        self.acked: list[tuple[str, Pair]] = []
        """(run id, pair) of every ack this feed delivered, in order."""

    async def poll_once(self, feed: str) -> tuple[int, int]:
        """One long poll of `feed`, and the new runs it listed settled: (listed, new)."""
        items = await self.client.owed(feed, self.limit, self.wait_ms, phase=ENDED)
        new = [item["run_id"] for item in items if item["run_id"] not in self._handled]
        for run_id in new:
            self._remember(run_id)
        await asyncio.gather(*(self._settle_bounded(run_id) for run_id in new))
        return len(items), len(new)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every feed of the domain until `stop` is set (then the poll in flight ends)."""
        loops = [
            asyncio.create_task(self._follow(feed, stop)) for feed in feed_domains(self.domain)
        ]
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([stopping, *loops], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [stopping, *loops]:
                task.cancel()
            for task in [stopping, *loops]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def settle(self, run_id: str) -> list[Pair]:
        """Give the run this domain's evidence, as the pool would at its execution's end."""
        run = await self.client.get_run(run_id)
        if run["phase"] != ENDED or run.get("governance") is not None:
            return []  # judged or moved on since the feed listed it: an ack now is drift
        ctx = remote_context(run, self.worker_id)
        acks = AckChannel(self.client, run)
        hooks = DomainDispatcher([self.domain], ctx, acks, self.hook_timeout_s)
        hooks.emit("on_execution_start")  # what is owed at the start (a trace) is still owed
        hooks.emit("on_execution_end", Outcome.recorded(run))
        await hooks.settle()
        await acks.flush()
        self.acked += [(run_id, pair) for pair in acks.delivered]
        return list(acks.delivered)

    async def _follow(self, feed: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                listed, new = await self.poll_once(feed)
            except ApiError as exc:  # refused (a key without acks:<feed>, ...): say so, go on
                log.error("the %s feed refused this domain: %s", feed, exc)
                listed, new = 1, 0
            if listed and not new:
                # only runs this domain saw already: the poll did not wait for
                # them, so this loop does, instead of asking again at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.idle_s)

    async def _settle_bounded(self, run_id: str) -> None:
        async with self._slots:
            try:
                delivered = await self.settle(run_id)
            except ApiError as exc:
                log.warning("run %s: %s", run_id, exc)
                return
        log.info("run %s: acked %s", run_id, ", ".join(f"{d}/{a}" for d, a in delivered) or "—")

    def _remember(self, run_id: str) -> None:
        self._handled[run_id] = None
        while len(self._handled) > REMEMBERED:
            self._handled.popitem(last=False)
