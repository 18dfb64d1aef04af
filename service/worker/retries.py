"""Sending a request to the rok API until it is answered, and never applying it twice.

- Transport errors and 5xx answers are retried with capped exponential
  backoff and jitter, for as long as `retry_timeout_s` allows (forever by
  default: a worker outlives a restarting service; its lease tells the service
  whether to wait for it).
- A retried call never applies twice. A request that may have reached the
  service before it failed (the response was lost, or a 5xx) is *ambiguous*:
  before sending it again, and again when the resend answers 409, the sender
  reads the run back through the caller's `confirm` test, which says whether
  the first send already landed. Lifecycle moves are guarded by the phase
  machine anyway (a second send gets 409); acks are not (a second ack is
  drift), so this read back is what keeps a lost response from becoming a
  duplicate.
- A 409 that follows no ambiguity is final and raised as `Conflict`: the
  caller lost the run (its lease was fenced, or the phase moved). It is never
  retried.
- A POST carries an `Idempotency-Key` (DESIGN section 9) unless its caller
  says the request is exactly-once by itself: one key per call of `send`, the
  same on each of its tries, so a resend after a lost answer gets the first
  answer replayed by the service instead of acting again. The read back above
  stays for what the service cannot replay: a 5xx (never remembered) and a
  service killed between its commit and storing the answer. Lifecycle moves,
  claims and heartbeats go without a key (`replay=False`): the phase machine
  and the lease refuse a move made twice, a claim_id returns the first lease,
  and the key would cost the service two more write transactions per request.
  The key's first request still running (409 `idempotency_in_progress`) and
  the rate limit (429) are waited out, for `Retry-After` seconds.
- With an API key, every request sends `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from service.telemetry import OFF, Tracing, inject
from service.worker.api_errors import ApiError, ServiceUnavailable, raise_for_status

log = logging.getLogger("rok.worker.client")

# Requests that never left this process can be resent blindly.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
IDEMPOTENCY_HEADER = "Idempotency-Key"
IN_PROGRESS = "idempotency_in_progress"
"""The `code` of the 409 for a key whose first request is still running."""
MAX_RETRY_AFTER_S = 60.0

Confirm = Callable[[], Awaitable[Any | None]]
"""Reads the run back after an ambiguous send: what the first send produced if it
landed (returned to the caller in place of the response), else None."""


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter (no thundering herd after a restart)."""

    first_s: float = 0.05
    cap_s: float = 2.0

    def delay(self, retry: int) -> float:
        return random.uniform(0, min(self.cap_s, self.first_s * 2 ** min(retry, 16)))


class RetryingSender:
    """One connection pool to the service, and the retry rules above on every request."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        retry_timeout_s: float | None,
        backoff: Backoff,
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None,
        api_key: str | None = None,
        tracing: Tracing = OFF,
    ) -> None:
        self._timeout_s = timeout_s
        self._retry_timeout_s = retry_timeout_s
        self._backoff = backoff
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._http = httpx.AsyncClient(
            base_url=url, timeout=timeout_s, limits=limits, transport=transport, headers=auth
        )
        tracing.instrument_client(self._http)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
        confirm: Confirm | None = None,
        replay: bool = True,
    ) -> Any:
        """Send with retries; returns the response, or what `confirm` found.

        A POST gets a new Idempotency-Key unless `headers` has one already, or
        `replay` is False (the request is exactly-once by itself, see above).
        """
        if method == "POST" and replay:
            headers = {IDEMPOTENCY_HEADER: uuid.uuid4().hex, **(headers or {})}
        headers = dict(headers or {})
        inject(headers)  # the run's trace, when this call is about a run (worker.tracing)
        started = time.monotonic()
        retry = 0
        ambiguous = False
        while True:
            wait_s: float | None = None
            if ambiguous and confirm is not None:
                found = await self._confirm(confirm)
                if found is not None:
                    return found
            try:
                response = await self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=timeout_s if timeout_s is not None else self._timeout_s,
                )
            except httpx.TransportError as exc:
                ambiguous = ambiguous or not isinstance(exc, _NOT_SENT)
                why = f"{type(exc).__name__}: {exc}"
            else:
                wait_s = _retry_after(response)
                if wait_s is not None:
                    why = f"HTTP {response.status_code}"  # nothing ran: ambiguity unchanged
                elif response.status_code < 500:
                    if response.status_code == 409 and ambiguous and confirm is not None:
                        found = await self._confirm(confirm)
                        if found is not None:
                            return found
                    raise_for_status(response)
                    return response
                else:
                    ambiguous = True  # the service may have committed before it failed
                    why = f"HTTP {response.status_code}"
            retry += 1
            waited = time.monotonic() - started
            if self._retry_timeout_s is not None and waited >= self._retry_timeout_s:
                raise ServiceUnavailable(
                    f"{method} {path} failed for {waited:.1f}s ({retry} tries): {why}"
                )
            if retry == 1 or retry % 10 == 0:
                log.warning("%s %s failed (%s); retrying (try %d)", method, path, why, retry)
            await asyncio.sleep(self._backoff.delay(retry) if wait_s is None else wait_s)

    @staticmethod
    async def _confirm(confirm: Confirm) -> Any | None:
        try:
            return await confirm()
        except (httpx.TransportError, ApiError) as exc:
            log.debug("read-back after an ambiguous request failed: %s", exc)
            return None


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait before resending, for an answer that means "not now": a 429, or
    a 409 for a key whose first request is still running. None for any other answer."""
    if response.status_code == 409:
        try:
            body = response.json()
        except ValueError:
            return None
        if not isinstance(body, dict) or body.get("code") != IN_PROGRESS:
            return None
    elif response.status_code != 429:
        return None
    try:
        seconds = float(response.headers.get("retry-after", "1"))
    except ValueError:  # an HTTP date, or garbage
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else 1.0
