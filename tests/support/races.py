"""Races: callables run in threads released together by one threading.Barrier.

Concurrency tests count side effects, never time (STYLE.md 13): `race` starts
one thread per action, lets them all go at once and returns what each one
did, in the order given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

# ("ok", the return value) or ("error", the exception raised)
Outcome = tuple[Literal["ok", "error"], Any]


def race(actions: Sequence[Callable[[], Any]], timeout_s: float = 120) -> list[Outcome]:
    """Run each action in its own thread, all released together; one outcome per action.

    Whatever must happen before the race (connecting, building a kernel) belongs
    outside the actions, so that the race is only the calls themselves. A thread
    still running after `timeout_s` fails the test.
    """
    barrier = threading.Barrier(len(actions))
    outcomes: list[Outcome] = [("error", RuntimeError("never ran"))] * len(actions)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout_s)
        except BaseException as error:  # surfaced in the test thread
            outcomes[index] = ("error", error)
            barrier.abort()  # no thread waits for one that will never come
            return
        # Past the barrier, an action's error must not abort it: a thread released
        # but not yet awake would see the barrier broken (BrokenBarrierError)
        try:
            outcomes[index] = ("ok", actions[index]())
        except BaseException as error:
            outcomes[index] = ("error", error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    assert not any(t.is_alive() for t in threads), "a racing thread never finished"
    return outcomes
