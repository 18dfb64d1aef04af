"""SIGTERM to `rok serve --demo` stops what it started: the server and the demo's process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.bench.children import lifeline
from tests.cli.conftest import REPO_ROOT, SERVER_ENV
from tests.support.databases import sqlite_url
from tests.support.server import START_TIMEOUT_S, free_port

STOP_TIMEOUT_S = 60.0


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # the parent is the 4th field, after "(command name)" which may hold spaces
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running, or at least not yet reaped by anyone."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_the_demo_it_started(tmp_path: Path) -> None:
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--migrate", "--demo", "--port", str(port)],
        env={
            **os.environ,
            **SERVER_ENV,
            "PYTHONPATH": str(REPO_ROOT),
            "ROK_AUTH": "off",
            "ROK_DATABASE_URL": sqlite_url(tmp_path),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # the demo joins this group: the cleanup below ends both
        preexec_fn=lifeline(),
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        demo: list[int] = []
        healthy = False
        while time.monotonic() < deadline and serve.poll() is None and not (demo and healthy):
            demo = children_of(serve.pid)
            with contextlib.suppress(httpx.TransportError):
                healthy = httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            time.sleep(0.1)
        assert healthy and len(demo) == 1, (healthy, demo, serve.poll())

        serve.send_signal(signal.SIGTERM)
        code = serve.wait(timeout=STOP_TIMEOUT_S)

        assert code == -signal.SIGTERM
        assert not alive(demo[0])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(serve.pid, signal.SIGKILL)
        serve.wait()
