"""In-process wake-ups: keyed waiters, and how often a waiter re-reads unwoken."""

from __future__ import annotations

import contextlib

from service.store.signals import (
    RECHECK_BUDGET_PER_S,
    RECHECK_LISTENING_S,
    RECHECK_UNHEARD_S,
    Signals,
)


def test_notify_wakes_the_waiters_of_that_key_only() -> None:
    signals = Signals()
    with signals.subscribe("ack:a") as a, signals.subscribe("ack:b") as b:
        signals.notify("ack:a")
        assert a.wait_blocking(0)
        assert not b.wait_blocking(0)
    assert signals.waiting() == 0


def test_notify_all_wakes_every_waiter() -> None:
    signals = Signals()
    with signals.subscribe("ack:a") as a, signals.subscribe("claimable") as b:
        signals.notify_all()
        assert a.wait_blocking(0) and b.wait_blocking(0)


def test_unwoken_rereads_stay_within_a_budget_however_many_wait() -> None:
    signals = Signals()
    assert signals.recheck_interval_s == RECHECK_UNHEARD_S
    many = 10 * RECHECK_BUDGET_PER_S
    with contextlib.ExitStack() as stack:
        for i in range(many):
            stack.enter_context(signals.subscribe(f"ack:{i}"))
        # each re-reads every interval: `many` waiters make RECHECK_BUDGET_PER_S reads/s
        assert signals.recheck_interval_s == many / RECHECK_BUDGET_PER_S
    assert signals.recheck_interval_s == RECHECK_UNHEARD_S


def test_a_live_listener_makes_rereads_rare() -> None:
    signals = Signals()
    with signals.listening():
        assert signals.recheck_interval_s == RECHECK_LISTENING_S
    assert signals.recheck_interval_s == RECHECK_UNHEARD_S
