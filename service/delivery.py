"""The webhook deliverer: the outbox's events sent as Standard Webhooks, after commit.

`tick(now)` is one pass with the time passed in (tests drive it without
sleeping); `run_forever` runs a pass whenever a commit wrote an event (the
outbox signal, from this replica or, on PostgreSQL, another one) or a retry
falls due. One replica delivers at a time (an advisory lock on PostgreSQL),
and each attempt is claimed in the database before it is sent
(service.store.outbox), so two deliverers never both send an attempt.

Every attempt carries the Standard Webhooks headers (webhook-id, the event's
id on every retry; webhook-timestamp; webhook-signature, `v1,` + base64 of
HMAC-SHA256 over `{id}.{timestamp}.{body}`, signed with the `standardwebhooks`
package). An event goes to every endpoint of ROK_WEBHOOK_URLS; one that
answered 2xx is not sent it again. A failed attempt is retried with
exponential backoff and jitter, up to ROK_WEBHOOK_MAX_ATTEMPTS attempts, then
the event is given up (`failed`). A move never waits for any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from standardwebhooks.webhooks import Webhook

from service.authority import Authority
from service.store.outbox import OUTBOX, Event, EventState, OutboxStore, endpoint_digest

log = logging.getLogger("rok.delivery")

DELIVERY_BATCH = 50
BACKOFF_FIRST_S = 5.0
BACKOFF_MAX_S = 15 * 60.0
CLAIM_MARGIN_S = 30.0
"""A claimed attempt is due again this long after its endpoints' timeouts, if never recorded."""
IDLE_RECHECK_S = 5.0
"""With nothing due, how often a replica looks again (a commit elsewhere on SQLite,
a replica that was not elected, a lost notification)."""
USER_AGENT = "rok-webhooks"


def backoff_s(attempt: int, draw: Callable[[], float] = random.random) -> float:
    """Seconds before the attempt after `attempt` (1, 2, ...): doubling, capped, jittered.

    Equal jitter: half the doubled delay is kept, the other half drawn, so
    retries of many events that failed together spread out, yet never come
    sooner than half the backoff.
    """
    ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** (attempt - 1))
    return ceiling / 2 + draw() * ceiling / 2


@dataclass
class DeliveryReport:
    delivered: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    lost_claims: list[str] = field(default_factory=list)
    """Due events another deliverer claimed first (nothing sent for them here)."""
    skipped: bool = False
    """Another replica holds the deliverers' election."""


class Deliverer:
    def __init__(
        self,
        authority: Authority,
        transport: httpx.BaseTransport | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        settings = authority.settings
        if settings.webhook_urls and settings.webhook_secret is None:
            raise ValueError("webhooks need a secret to sign with (ROK_WEBHOOK_SECRET)")
        self.authority = authority
        self.outbox = OutboxStore(authority.database)
        self._urls = settings.webhook_urls
        self._signer = Webhook(settings.webhook_secret) if settings.webhook_secret else None
        self._timeout_s = settings.webhook_timeout_ms / 1000.0
        self._max_attempts = settings.webhook_max_attempts
        self._draw = draw
        self._http = httpx.Client(
            timeout=self._timeout_s, transport=transport, follow_redirects=False
        )

    def close(self) -> None:
        self._http.close()

    def tick(self, now: datetime) -> DeliveryReport:
        """Send every due event once (if this replica is elected); report what became of each."""
        report = DeliveryReport()
        if not self._urls:
            return report
        with self.outbox.elected() as elected:
            if not elected:
                report.skipped = True
                return report
            for event in self.outbox.due(now, DELIVERY_BATCH):
                self._attempt(event, now, report)
        return report

    def _attempt(self, event: Event, now: datetime, report: DeliveryReport) -> None:
        hold = timedelta(seconds=self._timeout_s * len(self._urls) + CLAIM_MARGIN_S)
        if not self.outbox.claim(event, now, now + hold):
            report.lost_claims.append(event.id)
            return
        attempt = event.attempts + 1
        accepted, errors = list(event.delivered_to), []
        for position, url in enumerate(self._urls, start=1):
            digest = endpoint_digest(url)
            if digest in accepted:
                continue
            error = self._send(event, url, position, now)
            if error is None:
                accepted.append(digest)
            else:
                errors.append(error)
        error = "; ".join(errors) or None
        retry_at = None
        if error is not None and attempt < self._max_attempts:
            retry_at = now + timedelta(seconds=backoff_s(attempt, self._draw))
        state = self.outbox.record_attempt(event, now, tuple(accepted), error, retry_at)
        {
            EventState.DELIVERED: report.delivered,
            EventState.PENDING: report.retrying,
            EventState.FAILED: report.failed,
        }[state].append(event.id)
        if state is EventState.FAILED:
            log.error(
                "webhook %s (%s) given up after %d attempts: %s",
                event.id,
                event.type,
                attempt,
                error,
            )

    def _send(self, event: Event, url: str, position: int, now: datetime) -> str | None:
        """One POST of `event` to one endpoint: None when it answered 2xx, else why not.

        The reason names the endpoint by its position in ROK_WEBHOOK_URLS, never
        by its URL (which may hold a token): it is shown at GET /events.
        """
        assert self._signer is not None
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(event.id, now, event.body),
        }
        try:
            answer = self._http.post(url, content=event.body.encode(), headers=headers)
        except httpx.TimeoutException:
            return f"endpoint {position}: no answer within {self._timeout_s:g} s"
        except httpx.HTTPError as exc:
            why = str(exc).replace(url, f"endpoint {position}") or type(exc).__name__
            return f"endpoint {position}: {type(exc).__name__}: {why}"
        if answer.is_success:
            return None
        return f"endpoint {position} answered HTTP {answer.status_code}"

    def wait_s(self, now: datetime) -> float:
        """How long the loop may sleep: until the next retry is due, at most IDLE_RECHECK_S."""
        due = self.outbox.next_due()
        if due is None:
            return IDLE_RECHECK_S
        return min(max((due - now).total_seconds(), 0.0), IDLE_RECHECK_S)

    async def run_forever(self) -> None:
        """Deliver whenever an event commits or a retry falls due, until cancelled."""
        signals = self.authority.signals
        loop = asyncio.get_running_loop()
        try:
            while True:
                # subscribed before the pass: an event committed during it wakes the next wait
                with signals.subscribe(OUTBOX, loop) as woken:
                    wait = await self._pass()
                    await woken.wait(wait)
        finally:
            self.close()

    async def _pass(self) -> float:
        def run() -> float:
            now = self.authority.clock()
            report = self.tick(now)
            if report.retrying:
                log.warning("webhooks: %d deliveries failed, retrying", len(report.retrying))
            return self.wait_s(self.authority.clock())

        attempt = asyncio.ensure_future(asyncio.to_thread(run))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # the thread cannot be cancelled: let it end (and give back its
            # connection) before whoever stopped us closes the database
            with contextlib.suppress(Exception):
                await attempt
            raise
        except Exception:  # a failed pass must not stop alerts for good
            log.exception("webhook delivery pass failed")
            return IDLE_RECHECK_S
