"""What a pool checks before its first claim: that the service takes what it will send.

A pool with ROK_ENABLED=false records each outcome in one call, without
governance, and a service that governs every run refuses that call (DESIGN
section 9). Rather than fail every run it claims, such a pool stops at start
and says why.
"""

from __future__ import annotations

import asyncio

from service.worker.api_errors import ClientError
from service.worker.client import RokClient


class GovernedServiceError(ClientError):
    """A pool with ROK_ENABLED=false was pointed at a service that governs every run."""


async def refuse_a_governing_service(client: RokClient, url: str, stopping: asyncio.Event) -> None:
    """Ask the service (GET /healthz) whether it governs; GovernedServiceError if it
    does, or does not say.

    A stop asked while the service does not answer ends the wait: stopping
    never waits for an outage.
    """
    health = asyncio.ensure_future(client.health())
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({health, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not health.done():
        health.cancel()
        return
    if health.result().get("rok_enabled") is not False:
        raise GovernedServiceError(
            f"this worker runs with ROK_ENABLED=false (handlers without governance), "
            f"but the service at {url} governs every run (its ROK_ENABLED is not false) "
            "and would refuse each outcome: set ROK_ENABLED=true for this worker, or "
            "start the service with ROK_ENABLED=false"
        )
