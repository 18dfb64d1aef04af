"""Wake-ups across replicas: a commit on one service process wakes waiters on another.

PostgreSQL only (LISTEN/NOTIFY). Replica B is an Authority with its own
engine and its own in-process signals; replica A only hears of B's commits
through its NotificationListener, so each wake-up below proves that path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.authority import Authority
from service.config import Settings
from service.kernel.kernel import create_rok
from service.kernel.signals import CLAIMABLE, Signals, ack_key
from service.store.listener import NotificationListener
from service.store.migrations import upgrade
from tests.support.databases import fresh_database

pytestmark = pytest.mark.postgres

WAKE_WITHIN_S = 10.0  # a bound for a loaded machine, not a latency measurement


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgres", tmp_path) as url:
        upgrade(url)
        yield url


@pytest.fixture
def replica_a(postgres_url: str) -> Iterator[Signals]:
    signals = Signals()
    listener = NotificationListener(postgres_url, signals)
    listener.start()
    try:
        yield signals
    finally:
        listener.stop()


@pytest.fixture
def replica_b(postgres_url: str) -> Iterator[Authority]:
    authority = Authority(Settings(database_url=postgres_url))
    try:
        yield authority
    finally:
        authority.close()


def test_a_run_created_on_one_replica_wakes_claimers_on_another(
    replica_a: Signals, replica_b: Authority
) -> None:
    with replica_a.subscribe(CLAIMABLE) as waiting_claim:
        create_rok(store=replica_b.store, settings=replica_b.settings).declare_expectations()
        assert waiting_claim.wait_blocking(WAKE_WITHIN_S)


def test_an_ack_on_one_replica_wakes_the_check_waiting_on_another(
    replica_a: Signals, replica_b: Authority
) -> None:
    kernel = create_rok(store=replica_b.store, settings=replica_b.settings)
    kernel.declare_expectations()
    with replica_a.subscribe(ack_key(kernel.run_id)) as waiting_check:
        replica_b.kernel(kernel.run_id).ack("incidents", "create_incident")
        assert waiting_check.wait_blocking(WAKE_WITHIN_S)


def test_a_rolled_back_ack_wakes_nobody(replica_a: Signals, replica_b: Authority) -> None:
    kernel = create_rok(store=replica_b.store, settings=replica_b.settings)
    kernel.declare_expectations()
    with replica_a.subscribe(ack_key(kernel.run_id)) as waiting_check:
        with (
            pytest.raises(RuntimeError, match="changed its mind"),
            replica_b.store.transaction(kernel.run_id, replica_b.clock) as tx,
        ):
            tx.add_ack("incidents", "create_incident", None, None)
            raise RuntimeError("the request changed its mind")
        # then a committed one on another run: once it is heard, the first was not
        other = create_rok(store=replica_b.store, settings=replica_b.settings)
        other.declare_expectations()
        with replica_a.subscribe(ack_key(other.run_id)) as control:
            replica_b.kernel(other.run_id).ack("incidents", "create_incident")
            assert control.wait_blocking(WAKE_WITHIN_S)
        assert not waiting_check.wait_blocking(0)
    assert replica_b.store.get(kernel.run_id).acks == []
