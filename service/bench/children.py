"""Child processes that end with the process that started them, however it ends.

A `finally` stops a child when its parent unwinds (an error, Ctrl-C, SIGTERM),
but not when the parent is killed with SIGKILL, as a test timeout or an OOM
kill does: the child, often in a session of its own so that a terminal's
Ctrl-C reaches only the parent, would run on, orphaned, for as long as it
likes. So every process rok's bench and test harnesses start is also tied to
its parent by the kernel:

- `lifeline()` is a `preexec_fn` for `subprocess.Popen`: on Linux the child
  asks for SIGKILL when its parent ends (prctl PR_SET_PDEATHSIG), and kills
  itself if the parent already ended before it asked. The signal comes when
  the *thread* that started the child ends, so start children from a thread
  that lives as long as they should (the main thread does).
- `die_with_group_leader()` does the same from inside a process that someone
  else started for us: a worker process of uvicorn's multi-process mode,
  whose supervisor (the bench's child) leads its process group.
- `signal_group()` signals a child started with `start_new_session=True`
  together with whatever it started in turn.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.cache
def _prctl() -> Callable[..., Any] | None:
    """libc's prctl, looked up once in the parent (a forked child only calls it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., Any] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def lifeline() -> Callable[[], None] | None:
    """A `preexec_fn` that has the child killed when this process ends (None off Linux)."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def die_with_parent() -> None:  # runs in the child, between fork and exec
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent ended before the request was in place
            os.kill(os.getpid(), signal.SIGKILL)

    return die_with_parent


def die_with_group_leader() -> None:
    """Ask for SIGKILL when the parent ends, the parent being our group's leader.

    For uvicorn's worker processes: the supervisor has the bench's lifeline and
    dies with the bench, but its workers would serve on, orphaned, unless each
    ties itself to the supervisor. Called in the worker (its app factory), on
    Linux only; a worker whose supervisor is already gone ends at once.
    """
    prctl = _prctl()
    if prctl is None:
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != os.getpgrp():  # the leader ended before the request was in place
        os.kill(os.getpid(), signal.SIGKILL)


def signal_group(process: subprocess.Popen[Any], signum: int) -> None:
    """Send `signum` to the process group `process` leads (start_new_session=True).

    Only while the leader is not reaped: until then its pid, which is the
    group's id, cannot name anybody else's group.
    """
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def end_group(process: subprocess.Popen[Any], grace_s: float) -> int:
    """SIGTERM the group, SIGKILL it if the leader is still there after `grace_s`; reap it."""
    signal_group(process, signal.SIGTERM)
    try:
        return process.wait(grace_s)
    except subprocess.TimeoutExpired:
        signal_group(process, signal.SIGKILL)
        return process.wait()
