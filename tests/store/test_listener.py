"""Wake-ups across replicas: a commit on one service process wakes waiters on another.

PostgreSQL only (LISTEN/NOTIFY). Replica B is an Authority with its own
engine and its own in-process signals; replica A only hears of B's commits
through its NotificationListener, so each wake-up below proves that path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event, text

from service.authority import Authority
from service.config import Settings
from service.kernel.kernel import create_rok
from service.store.database import Database
from service.store.listener import APPLICATION_NAME, NotificationListener, libpq_url
from service.store.migrations import upgrade
from service.store.runs import NOTIFY_CHANNEL, notice
from service.store.signals import (
    CLAIMABLE,
    RECHECK_LISTENING_S,
    RECHECK_UNHEARD_S,
    Signals,
    ack_key,
)
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


def test_a_replica_skips_the_echo_of_its_own_commits(postgres_url: str) -> None:
    # one process: the Authority's store and the listener share one Signals
    authority = Authority(Settings(database_url=postgres_url))
    listener = NotificationListener(postgres_url, authority.signals)
    listener.start()
    try:
        own, other = authority.signals.origin, "another-replica"
        with (
            authority.signals.subscribe("ack:echo") as echo,
            authority.signals.subscribe("ack:control") as control,
        ):
            with psycopg.connect(libpq_url(postgres_url), autocommit=True) as conn:
                conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, notice(own, "ack:echo")))
                conn.execute(
                    "SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, notice(other, "ack:control"))
                )
            # notifications arrive in order: once the second is heard, the first was skipped
            assert control.wait_blocking(WAKE_WITHIN_S)
            assert not echo.wait_blocking(0)
    finally:
        listener.stop()
        authority.close()


def test_a_listener_that_reconnects_wakes_every_waiter(postgres_url: str) -> None:
    # notifications sent while its connection was down are lost: waiters must re-read
    signals = Signals()
    assert signals.recheck_interval_s == RECHECK_UNHEARD_S
    listener = NotificationListener(postgres_url, signals)
    listener.start()
    try:
        assert signals.recheck_interval_s == RECHECK_LISTENING_S
        with signals.subscribe("ack:any-run") as waiting_check:
            with psycopg.connect(libpq_url(postgres_url), autocommit=True) as conn:
                killed = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s AND datname = current_database()",
                    (APPLICATION_NAME,),
                ).fetchall()
            assert killed == [(True,)]
            assert waiting_check.wait_blocking(WAKE_WITHIN_S)
    finally:
        listener.stop()
    assert signals.recheck_interval_s == RECHECK_UNHEARD_S


def test_notices_leave_the_transaction_before_its_commit_and_follow_it(
    replica_a: Signals, postgres_url: str
) -> None:
    # inside the transaction a NOTIFY would hold PostgreSQL's cluster-wide notify lock
    # through the commit's flush: every notifying commit would wait for the one before
    database = Database(postgres_url)
    statements: list[str] = []

    def capture(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        with replica_a.subscribe("ack:after-commit") as waiting:
            with database.write() as conn:
                database.dialect.publish(
                    conn, NOTIFY_CHANNEL, [notice("other", "ack:after-commit")]
                )
                conn.execute(text("SELECT 1"))
            assert waiting.wait_blocking(WAKE_WITHIN_S)  # sent once it committed
        # and never as a statement of the transaction (sent apart, on the driver's connection)
        assert statements and not [s for s in statements if "pg_notify" in s]
    finally:
        database.dispose()


def test_a_notice_that_cannot_be_sent_never_undoes_or_fails_the_write(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(postgres_url)
    try:
        with database.write() as conn:
            conn.execute(text("CREATE TABLE written (n integer)"))
            conn.execute(text("INSERT INTO written VALUES (1)"))
            # PostgreSQL refuses a payload of 8000 bytes or more
            database.dialect.publish(conn, NOTIFY_CHANNEL, ["x" * 9000])
        assert "not sent to other replicas" in caplog.text
        with database.write() as conn:  # the connection went back as it came
            conn.execute(text("INSERT INTO written VALUES (2)"))
        with database.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM written")).scalar() == 2
    finally:
        database.dispose()
