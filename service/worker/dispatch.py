"""Running one run's domain hooks: concurrently, in order per domain, each bounded.

Why a chain per domain: a domain's `on_execution_end` must not overtake its
own `on_execution_start` (traces completes the trace it started), while
different domains must not wait for each other (a hanging incidents domain
cannot hold back the policy ack).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from service.worker.acks import AckChannel
from service.worker.context import RunContext
from service.worker.hooks import Domain
from service.worker.outcome import describe_exception

log = logging.getLogger("rok.worker.domains")


UNACKED_HOOKS = frozenset({"on_attempt_failed"})
"""Hooks called without the ack channel: a failed attempt that will be retried."""


class DomainDispatcher:
    def __init__(
        self,
        domains: Sequence[Domain],
        ctx: RunContext,
        acks: AckChannel,
        timeout_s: float,
    ) -> None:
        self._domains = list(domains)
        self._ctx = ctx
        self._acks = acks
        self._timeout_s = timeout_s
        self._tails: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def emit(self, hook: str, *args: Any) -> None:
        """Start `hook` on every domain, each after that domain's previous hook."""
        for index, domain in enumerate(self._domains):
            previous = self._tails.get(index)
            task = asyncio.create_task(
                self._call(domain, hook, args, previous),
                name=f"rok-domain-{domain.name}-{hook}-{self._ctx.run_id[:8]}",
            )
            self._tails[index] = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def settle(self, timeout_s: float | None = None) -> bool:
        """Wait for every hook emitted so far; True if all ended in time."""
        pending = set(self._tasks)
        if not pending:
            return True
        _, still = await asyncio.wait(pending, timeout=timeout_s)
        return not still

    async def close(self) -> None:
        """Cancel what is left: after the governance check an ack would only be noise."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _call(
        self,
        domain: Domain,
        hook: str,
        args: tuple[Any, ...],
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        method = getattr(domain, hook)
        # a hook that owes nothing gets no channel: the run's evidence is acked once
        channel = () if hook in UNACKED_HOOKS else (self._acks,)
        try:
            async with asyncio.timeout(self._timeout_s):
                await method(self._ctx, *args, *channel)
        except TimeoutError:
            log.warning(
                "domain %s hung in %s for run %s (over %.1fs); its acks stay missing",
                domain.name,
                hook,
                self._ctx.run_id,
                self._timeout_s,
            )
        except Exception as exc:
            log.warning(
                "domain %s raised in %s for run %s: %r", domain.name, hook, self._ctx.run_id, exc
            )
            await self._ack_failure(domain, hook, exc)

    async def _ack_failure(self, domain: Domain, hook: str, exc: Exception) -> None:
        error = f"domain {domain.name} failed in {hook}: {describe_exception(exc)}"
        for domain_name, action in domain.owes.get(hook, ()):
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._acks.send(domain_name, action, error=error)
            except Exception as send_exc:
                log.warning(
                    "could not report %s/%s failing for run %s: %r",
                    domain_name,
                    action,
                    self._ctx.run_id,
                    send_exc,
                )
