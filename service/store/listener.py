"""Cross-replica wake-ups on PostgreSQL: LISTEN for what other replicas NOTIFY.

Every write transaction that makes a run claimable or records an ack sends
`pg_notify('rok_signals', '<origin> <key>')` (delivered on commit). Each
replica runs one listener thread on its own connection and turns each
notification into a local `Signals.notify`, so a governance check waiting on
replica A wakes when the ack lands on replica B, without polling.

A replica hears its own commits too; it already woke its waiters when they
committed, so it skips its own origin: the echo would make every waiter read
the database a second time for each ack. Notifications sent while the
connection was down are lost, so a (re)connect wakes every waiter to re-read.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from sqlalchemy.engine import make_url

from service.store.runs import NOTIFY_CHANNEL, read_notice
from service.store.signals import Signals

log = logging.getLogger("rok.listener")
APPLICATION_NAME = "rok-listener"  # how its connection shows in pg_stat_activity


def libpq_url(sqlalchemy_url: str) -> str:
    """postgresql+psycopg://… as a plain libpq URI (query options kept)."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class NotificationListener:
    def __init__(self, sqlalchemy_url: str, signals: Signals) -> None:
        self._conninfo = libpq_url(sqlalchemy_url)
        self._signals = signals
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rok-listener", daemon=True)

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        self._ready.wait(timeout_s)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with (
                    psycopg.connect(
                        self._conninfo, autocommit=True, application_name=APPLICATION_NAME
                    ) as conn,
                    self._signals.listening(),
                ):
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._signals.notify_all()  # whatever committed while nobody listened
                    self._ready.set()
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=0.1):
                            self.deliver(note.payload)
            except psycopg.Error:
                # A lost connection loses no run: waiters fall back to re-reading
                # the database every second, and the reconnect wakes them all.
                log.warning("LISTEN connection lost; reconnecting", exc_info=True)
                self._stopping.wait(1.0)

    def deliver(self, payload: str) -> None:
        """Wake this replica's waiters for another replica's commit."""
        origin, key = read_notice(payload)
        if origin != self._signals.origin:
            self._signals.notify(key)
