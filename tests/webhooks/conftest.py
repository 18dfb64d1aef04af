"""Webhook fixtures: a receiver serving in a thread, and an authority that alerts it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.authority import Authority
from service.delivery import Deliverer
from tests.support.authorities import checked_authority
from tests.webhooks.receiver import SECRET_KEY, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver().serving() as current:
        yield current


@pytest.fixture
def hooked(migrated_url: str, receiver: Receiver) -> Iterator[Authority]:
    """An authority on both backends whose alerts go to `receiver` (3 attempts at most)."""
    with checked_authority(
        migrated_url,
        webhook_urls=(receiver.url,),
        webhook_secret=SECRET_KEY,
        webhook_max_attempts=3,
    ) as current:
        yield current


@pytest.fixture
def deliverer(hooked: Authority) -> Iterator[Deliverer]:
    # no jitter: a retry is due after exactly half its doubled backoff
    current = Deliverer(hooked, draw=lambda: 0.0)
    yield current
    current.close()
