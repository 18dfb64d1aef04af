"""A parent killed with SIGKILL takes its children along: nothing rok starts is orphaned.

A bench or a test run that is killed (a timeout, an OOM kill) runs no
`finally`; the servers and workers it started would go on serving, orphaned,
unless they die with their parent (service.bench.children.lifeline). Each
test starts a parent that starts children the way rok does, kills the parent
with SIGKILL and polls until every child is gone; none sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from service.bench.children import lifeline
from service.store.migrations import upgrade
from tests.support.databases import fresh_database

ROOT = Path(__file__).resolve().parents[2]
START_WAIT_S = 120.0  # bounds for a loaded machine; each wait polls for its outcome
GONE_WAIT_S = 30.0

T = TypeVar("T")

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the lifeline is Linux's PR_SET_PDEATHSIG"
)


def identity(pid: int) -> str | None:
    """The process's start time while it runs; None once it is gone (or a zombie).

    Comparing start times, a pid reused by a new process is not taken for the old one.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name may hold spaces and parens
    state, start_time = fields[0], fields[19]  # stat fields 3 and 22
    return None if state in ("Z", "X") else start_time


def children_of(pid: int) -> dict[int, str]:
    """The live children of `pid`, each with its command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = command
    return found


def launched_servers(bench_pid: int) -> list[int]:
    """The bench's server processes (`python -m service.bench.launch …`) running now."""
    return [pid for pid, command in children_of(bench_pid).items() if "bench.launch" in command]


def start_parent(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lifeline(),  # should this test be killed, the parent goes too
        )


def wait_while_running(
    process: subprocess.Popen[bytes], log: Path, found: Callable[[], T], what: str
) -> T:
    """Poll `found()` until it is truthy, failing if `process` exits or START_WAIT_S pass."""
    deadline = time.monotonic() + START_WAIT_S
    while not (result := found()):
        assert process.poll() is None, f"exited before any {what}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {what} in {START_WAIT_S}s:\n{log.read_text()}"
        time.sleep(0.05)
    return result


def kill_and_wait_for_children(parent: subprocess.Popen[bytes], children: list[int]) -> None:
    """SIGKILL the parent; every child must be gone within GONE_WAIT_S."""
    started = {pid: identity(pid) for pid in children}
    assert all(started.values()), f"a child was not running before the kill: {started}"
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + GONE_WAIT_S
    while True:
        alive = [pid for pid, start in started.items() if identity(pid) == start]
        if not alive:
            return
        if time.monotonic() > deadline:
            for pid in alive:  # do not leave them to the tests that follow
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"children {alive} outlived their killed parent by {GONE_WAIT_S}s")
        time.sleep(0.05)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("sqlite", tmp_path) as url:
        upgrade(url)
        yield url


@pytest.mark.parametrize("kind", ["bench-server", "harness"])
def test_servers_and_workers_die_with_the_process_that_started_them(
    kind: str, sqlite_url: str, tmp_path: Path
) -> None:
    pids_file = tmp_path / "pids.json"
    log = tmp_path / "parent.log"
    command = [sys.executable, "-m", "tests.crash.parent", kind, sqlite_url, str(pids_file)]
    parent = start_parent(command, log)
    try:
        wait_while_running(parent, log, pids_file.exists, "children")
        children = json.loads(pids_file.read_text())
        assert len(children) == (2 if kind == "harness" else 1)
        kill_and_wait_for_children(parent, children)
    finally:
        parent.kill()
        parent.wait()


def test_a_killed_bench_leaves_no_server_behind(tmp_path: Path) -> None:
    """`rok bench` killed with SIGKILL while it serves W1 (the case a test timeout makes)."""
    log = tmp_path / "bench.log"
    command = [sys.executable, "-m", "service.bench", "--quick", "--workloads", "W1"]
    bench = start_parent([*command, "--out", str(tmp_path / "out")], log)
    try:
        servers = wait_while_running(bench, log, lambda: launched_servers(bench.pid), "server")
        kill_and_wait_for_children(bench, servers)
    finally:
        bench.kill()
        bench.wait()
