"""In-process wake-ups: governance checks waiting on acks, idle claims waiting on runs.

A waiting check holds neither a thread nor a database connection: an async
waiter is a future on its event loop, woken with call_soon_threadsafe by
whichever thread committed the ack. Acks committed by other processes reach
this one through a backend listener (PostgreSQL LISTEN/NOTIFY) that calls
`notify`, or, on SQLite, through the waiter's periodic re-check.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterator


class _Subscription:
    """One waiter: wakes either a thread (Event) or an asyncio future."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop
        self._event = threading.Event()
        self._future: asyncio.Future[None] | None = loop.create_future() if loop else None

    def wake(self) -> None:
        self._event.set()
        if self._loop is not None and self._future is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def wait_blocking(self, timeout_s: float) -> bool:
        return self._event.wait(max(timeout_s, 0.0))

    async def wait(self, timeout_s: float) -> bool:
        assert self._future is not None, "subscribe with a loop to wait asynchronously"
        try:
            await asyncio.wait_for(asyncio.shield(self._future), max(timeout_s, 0.0))
        except TimeoutError:
            return False
        return True


CLAIMABLE = "claimable"
"""Notified when a run becomes available to claim (created, or released)."""


def ack_key(run_id: str) -> str:
    """Notified when an ack for that run commits."""
    return f"ack:{run_id}"


# How often a waiter re-reads the database with no wake-up at all. Without a
# listener, the safety net for commits by another process on the same SQLite
# file; with one, only for a notification lost despite it (a reconnect already
# wakes everyone). Each waiting check re-reads on its own, so without a budget
# a thousand waiting would cost a thousand reads per second: past
# RECHECK_BUDGET_PER_S waiters the interval grows instead. Wake-ups from this
# process's own commits are immediate either way.
RECHECK_UNHEARD_S = 1.0
RECHECK_LISTENING_S = 10.0
RECHECK_BUDGET_PER_S = 100


class Signals:
    """Keyed subscriptions; `notify(key)` wakes every waiter of that key.

    `origin` names this process's signals, so a cross-replica listener can
    skip the echo of its own commits (already woken locally on commit).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[_Subscription]] = {}
        self.origin = uuid.uuid4().hex
        self._listeners = 0
        self._subscribed = 0

    @property
    def recheck_interval_s(self) -> float:
        """How long a waiter may sleep before re-reading what it waits on."""
        if self._listeners:
            return RECHECK_LISTENING_S
        return max(RECHECK_UNHEARD_S, self._subscribed / RECHECK_BUDGET_PER_S)

    @contextlib.contextmanager
    def listening(self) -> Iterator[None]:
        """Held while other processes' commits reach `notify` (a live listener)."""
        with self._lock:
            self._listeners += 1
        try:
            yield
        finally:
            with self._lock:
                self._listeners -= 1

    @contextlib.contextmanager
    def subscribe(
        self, key: str, loop: asyncio.AbstractEventLoop | None = None
    ) -> Iterator[_Subscription]:
        """Register before reading the state, so a change committed in between still wakes."""
        sub = _Subscription(loop)
        with self._lock:
            self._waiters.setdefault(key, set()).add(sub)
            self._subscribed += 1
        try:
            yield sub
        finally:
            with self._lock:
                self._subscribed -= 1
                subs = self._waiters.get(key)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._waiters[key]

    def notify(self, key: str) -> None:
        with self._lock:
            subs = list(self._waiters.get(key, ()))
        for sub in subs:
            sub.wake()

    def notify_all(self) -> None:
        """Wake every waiter: notifications may have been missed (a listener reconnected)."""
        with self._lock:
            subs = [sub for group in self._waiters.values() for sub in group]
        for sub in subs:
            sub.wake()

    def waiting(self) -> int:
        return self._subscribed
