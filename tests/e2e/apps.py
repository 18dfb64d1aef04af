"""Handlers for worker processes the tests start (`--app tests.e2e.apps:handlers`)."""

from __future__ import annotations

import time
from pathlib import Path

from service.worker import RunContext


def wait_for_file(ctx: RunContext) -> str:
    """Runs until the file named in its input exists: the test decides when it ends."""
    marker = Path(ctx.input["marker"])
    ctx.step("waiting", marker=str(marker))
    while not marker.exists():
        time.sleep(0.02)
    return "released"


def stuck(ctx: RunContext) -> None:
    """Never finishes on its own; stops only when its run is stopped."""
    while True:
        time.sleep(0.02)
        ctx.check()


def sleeper(ctx: RunContext) -> str:
    """Sleeps `seconds`, checking in between."""
    deadline = time.monotonic() + float(ctx.input["seconds"])
    while time.monotonic() < deadline:
        time.sleep(0.02)
        ctx.check()
    return "slept"


def crash_once(ctx: RunContext) -> str:
    """Hangs on its first attempt (the test kills that worker); quick on any later one."""
    ctx.step("attempt", number=ctx.attempt)
    while ctx.attempt == 1:
        time.sleep(0.02)
        ctx.check()
    return f"done on attempt {ctx.attempt}"


handlers = {
    "wait_for_file": wait_for_file,
    "stuck": stuck,
    "sleeper": sleeper,
    "crash_once": crash_once,
}
