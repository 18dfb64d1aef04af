"""The owed feed's long poll: woken by a commit, not by polling, and never holding a thread.

The periodic re-read is pushed out of the test's reach (monkeypatched to ten
minutes), so a poll that answers with a run before its 30-second wait ended
can only have been woken by the commit that made the run owed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.authority import Authority
from service.config import Settings
from service.kernel.kernel import RunOrchestrationKernel, create_rok
from service.model.phases import RunPhase
from service.store import signals as signals_module
from service.store.listener import NotificationListener
from service.store.migrations import upgrade
from service.store.owed import OwedFeed, OwedQuery, OwedRun
from tests.support.databases import fresh_database
from tests.support.owed import assert_owed_index_exact

WAIT_S = 30.0  # the poll's own bound; it must answer long before


@pytest.fixture(autouse=True)
def no_rereads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signals_module, "RECHECK_UNHEARD_S", 600.0)
    monkeypatch.setattr(signals_module, "RECHECK_LISTENING_S", 600.0)


class CountingFeed(OwedFeed):
    """The feed, counting its reads so the test acts only once the poll is waiting."""

    def __init__(self, authority: Authority) -> None:
        super().__init__(authority.database, authority.signals)
        self.reads = 0
        self.first_read = threading.Event()

    def read(self, query: OwedQuery) -> list[OwedRun]:
        owed = super().read(query)
        self.reads += 1
        self.first_read.set()
        return owed


def poll_while(
    feed: CountingFeed, query: OwedQuery, commit: Callable[[], Any]
) -> tuple[list[OwedRun], int]:
    """Long-poll `query`; once its first read found nothing, `commit` in another thread."""

    async def scenario() -> list[OwedRun]:
        waiting = asyncio.create_task(feed.wait(query, WAIT_S))
        assert await asyncio.to_thread(feed.first_read.wait, WAIT_S)
        await asyncio.to_thread(commit)
        return await waiting

    answer = asyncio.run(scenario())
    return answer, feed.reads


def new_run(authority: Authority, **fields: Any) -> RunOrchestrationKernel:
    kernel = create_rok(store=authority.store, settings=authority.settings, **fields)
    kernel.declare_expectations()
    return kernel


def test_a_waiting_poll_answers_when_a_run_owing_the_domain_is_created(
    authority: Authority,
) -> None:
    feed = CountingFeed(authority)
    created: list[str] = []
    answer, reads = poll_while(
        feed,
        OwedQuery("incidents", 10),
        lambda: created.append(new_run(authority).run_id),
    )
    assert [r.run_id for r in answer] == created
    assert reads == 2  # the empty read, then one after the wake-up
    assert authority.signals.waiting() == 0


def test_a_waiting_poll_answers_when_a_run_enters_the_phase_it_asked_for(
    authority: Authority,
) -> None:
    kernel = new_run(authority)
    kernel.authorize("GRANTED", begin_execution=True)
    feed = CountingFeed(authority)
    answer, _ = poll_while(
        feed,
        OwedQuery("incidents", 10, RunPhase.GOVERNANCE_CHECK),
        lambda: kernel.execution_complete(False, "boom"),
    )
    assert [(r.run_id, r.phase) for r in answer] == [(kernel.run_id, RunPhase.GOVERNANCE_CHECK)]
    assert_owed_index_exact(authority.store)


def test_a_landed_ack_wakes_the_poll_to_read_again(authority: Authority) -> None:
    """An ack can only take pairs off a feed, so the poll it wakes reads again and,
    finding nothing owed, waits on: until the run created next answers it."""
    elsewhere = new_run(authority, expectations=[("policies", "evaluate_policy", None)])
    feed = CountingFeed(authority)
    created: list[str] = []

    def ack_then_create() -> None:
        elsewhere.ack("incidents", "create_incident")  # drift: not expected of this run
        for _ in range(int(WAIT_S * 100)):
            if feed.reads == 2:
                break
            time.sleep(0.01)
        assert feed.reads == 2, "the ack did not wake the poll"
        created.append(new_run(authority).run_id)

    answer, reads = poll_while(feed, OwedQuery("incidents", 10), ack_then_create)
    assert [r.run_id for r in answer] == created
    assert reads == 3


@pytest.mark.postgres
def test_a_run_created_on_another_replica_wakes_the_poll(tmp_path: Path) -> None:
    """PostgreSQL: the commit on replica B reaches replica A's poll through NOTIFY."""
    with fresh_database("postgres", tmp_path) as url:
        upgrade(url)
        _created_on_b_wakes_a(url)


def _created_on_b_wakes_a(migrated_url: str) -> None:
    replica_a = Authority(Settings(database_url=migrated_url))
    replica_b = Authority(Settings(database_url=migrated_url))
    listener = NotificationListener(migrated_url, replica_a.signals)
    listener.start()
    try:
        created: list[str] = []
        answer, _ = poll_while(
            CountingFeed(replica_a),
            OwedQuery("policies", 10),
            lambda: created.append(new_run(replica_b).run_id),
        )
        assert [r.run_id for r in answer] == created
    finally:
        listener.stop()
        replica_a.close()
        replica_b.close()


@pytest.fixture
def authority(migrated_url: str) -> Iterator[Authority]:
    current = Authority(Settings(database_url=migrated_url, governance_timeout_ms=200))
    try:
        yield current
    finally:
        current.close()
