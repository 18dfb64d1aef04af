"""`rok serve --workers N`: N processes really serve, each with its own LISTEN; SQLite refuses.

Who answered is read from the operating system, not from the service: the
test holds keep-alive connections open and asks /proc which worker process
owns the server's end of each, and which owns each PostgreSQL connection whose
backend says it is a `rok-listener`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from service.bench.children import end_group, lifeline
from service.bench.cpu import children_of, command_line
from service.cli import main
from service.store.migrations import upgrade
from tests.support.databases import fresh_database, postgres_server_url
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120.0  # bounds for a loaded machine; each wait polls for its outcome
STOP_GRACE_S = 30.0
MAX_CONNECTIONS = 64
ESTABLISHED = "01"  # /proc/net/tcp's state code


def _tcp_sockets() -> list[tuple[int, int, int]]:
    """(local port, remote port, inode) of every established IPv4 TCP socket."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] != ESTABLISHED:
            continue
        local, remote, inode = fields[1], fields[2], int(fields[9])
        found.append((int(local.split(":")[1], 16), int(remote.split(":")[1], 16), inode))
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def owners(pids: list[int], local_port: int | None = None) -> dict[int, set[int]]:
    """For each pid, the local ports of its established sockets (on `local_port` only)."""
    sockets = _tcp_sockets()
    owned: dict[int, set[int]] = {}
    for pid in pids:
        inodes = _socket_inodes(pid)
        owned[pid] = {
            local
            for local, _remote, inode in sockets
            if inode in inodes and (local_port is None or local == local_port)
        }
    return owned


def wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT_S}s: {what}")
        time.sleep(0.1)


@contextlib.contextmanager
def serving(url: str, workers: int, log: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`rok serve --migrate --workers N` on a free port; SIGTERM to its group at the end."""
    port = free_port()
    env = {**os.environ, "ROK_DATABASE_URL": url, "ROK_AUTH": "off", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "service", "serve", "--migrate", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--workers", str(workers), "--no-access-log"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lifeline(),
        )
    try:
        yield port, process
    finally:
        end_group(process, STOP_GRACE_S)


def uvicorn_workers(supervisor: int) -> list[int]:
    return [pid for pid in children_of(supervisor) if "spawn_main" in command_line(pid)]


@pytest.mark.postgres
def test_two_workers_serve_and_each_listens(tmp_path: Path) -> None:
    server_url = postgres_server_url()
    log = tmp_path / "serve.log"
    with (
        fresh_database("postgres", tmp_path) as url,
        serving(url, 2, log) as (port, process),
    ):
        wait_for("two worker processes", lambda: len(uvicorn_workers(process.pid)) == 2)
        workers = uvicorn_workers(process.pid)

        # each worker holds a LISTEN connection of its own (its lifespan's listener)
        admin = create_engine(server_url, poolclass=NullPool)
        try:

            def listening() -> set[int]:
                with admin.connect() as conn:
                    ports = {
                        int(row.client_port)
                        for row in conn.execute(
                            text(
                                "SELECT client_port FROM pg_stat_activity "
                                "WHERE application_name = 'rok-listener' AND client_port > 0"
                            )
                        )
                    }
                return {pid for pid, mine in owners(workers).items() if mine & ports}

            wait_for(f"both workers listening:\n{log.read_text()}", lambda: len(listening()) == 2)
        finally:
            admin.dispose()

        # both answer requests: new keep-alive connections, held open, until each
        # worker owns the server's end of at least one
        with contextlib.ExitStack() as held:
            serving_pids: set[int] = set()
            for _ in range(MAX_CONNECTIONS):
                client = held.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}"))
                assert client.get("/version").status_code == 200
                serving_pids = {pid for pid, mine in owners(workers, port).items() if mine}
                if len(serving_pids) == 2:
                    break
            assert serving_pids == set(workers), (serving_pids, workers)
    assert process.returncode == 0, log.read_text()[-3000:]
    assert not uvicorn_workers(process.pid)


def test_more_than_one_worker_on_sqlite_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROK_DATABASE_URL", f"sqlite:///{tmp_path / 'rok.db'}")
    monkeypatch.setenv("ROK_AUTH", "off")
    assert main(["serve", "--workers", "2"]) == 2
    error = capsys.readouterr().err
    assert "--workers 2 needs PostgreSQL" in error
    assert "Serve SQLite with --workers 1" in error
    assert not (tmp_path / "rok.db").exists()  # refused before touching the database


PARENT = """
import json, sys, time
from service.bench.server import ServerProcess, server_env
server = ServerProcess("service", server_env(sys.argv[1]), workers=2)
server.start()
print(json.dumps([server.pid]), flush=True)
time.sleep(600)
"""


@pytest.mark.postgres
def test_a_killed_bench_leaves_no_worker_of_a_multi_process_server(tmp_path: Path) -> None:
    """The supervisor has the bench's lifeline; each worker ties itself to the supervisor
    (service.bench.launch), so SIGKILL on the bench ends all three processes."""
    with fresh_database("postgres", tmp_path) as url:
        upgrade(url)
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lifeline(),
        )
        assert parent.stdout is not None
        with parent.stdout:
            (supervisor,) = json.loads(parent.stdout.readline())
        try:
            wait_for("two workers", lambda: len(uvicorn_workers(supervisor)) == 2)
            started = [supervisor, *uvicorn_workers(supervisor)]
            parent.kill()
            parent.wait()
            wait_for(f"{started} gone with their bench", lambda: not any(map(alive, started)))
        finally:
            parent.kill()
            parent.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(supervisor, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
