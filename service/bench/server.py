"""A real server process for the bench: started on a free port, always stopped.

Each process runs in its own session (process group), so a Ctrl-C in the
terminal reaches only the bench, whose `finally` stops the servers in order
instead of leaving them half shut down mid-measurement. A bench that ends
without its `finally` (SIGKILL, a test's timeout) takes them along all the
same: they are started with a lifeline (service.bench.children).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import IO

import httpx

from service.bench.children import end_group, lifeline, signal_group
from service.bench.cpu import children_of, command_line, group_cpu_seconds

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class ServerFailed(RuntimeError):
    """The server process exited or never became ready; carries its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# How the bench's services authenticate: `required` (the service's default, every
# request carries a key) or `off` (no key); `rok bench --auth` sets it once per run,
# so the two can be compared in one session.
AUTH_MODES = ("required", "off")
auth_mode = "required"


def use_auth(mode: str) -> None:
    global auth_mode
    if mode not in AUTH_MODES:
        raise ValueError(f"--auth {mode!r}: use one of {', '.join(AUTH_MODES)}")
    auth_mode = mode


def server_env(database_url: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without any ROK_*/RAC_* setting, plus exactly ours.

    A stray ROK_GOVERNANCE_TIMEOUT_MS in the caller's shell must not change
    what is measured; what the server ran with is recorded in the report.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROK_", "RAC_"))}
    env["ROK_DATABASE_URL"] = database_url
    env["ROK_AUTH"] = auth_mode
    env.update(overrides or {})
    return env


def bench_settings(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in sorted(env.items()) if k.startswith(("ROK_", "RAC_"))}


def bench_key(database_url: str) -> str:
    """An admin key for the bench's clients, in the (migrated) bench database."""
    from service.model.phases import utc_now
    from service.store.database import Database
    from service.store.keys import KeyStore

    database = Database(database_url, pool_size=1)
    try:
        _, key = KeyStore(database).create("bench", ["admin"], "rok bench", utc_now())
    finally:
        database.dispose()
    return key


class ServerProcess:
    """`python -m service.bench.launch APP HOST PORT WORKERS` with a given environment."""

    def __init__(self, app: str, env: Mapping[str, str], workers: int = 1) -> None:
        self.app = app
        self.env = dict(env)
        self.workers = workers
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.api_key: str | None = None
        """The key the bench's clients send to the service (ROK_AUTH=required)."""

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server was not started"
        return self._process.pid

    def start(self) -> None:
        if self.app == "service" and self.env.get("ROK_AUTH") == "required":
            self.api_key = bench_key(self.env["ROK_DATABASE_URL"])
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives until stop()
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.bench.launch",
                self.app,
                HOST,
                str(self.port),
                str(self.workers),
            ],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lifeline(),
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ServerFailed(f"{self.app} server exited at start:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base_url}/healthz", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise ServerFailed(f"{self.app} server not ready in {READY_TIMEOUT_S}s:\n{self.log_tail()}")

    def rss_kib(self) -> int:
        """Resident set size now (VmRSS of /proc/<pid>/status), in KiB."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise ServerFailed(f"no VmRSS for pid {self.pid}")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server used so far: its whole process group,
        so a multi-process server's workers count too (service.bench.cpu)."""
        return group_cpu_seconds(self.pid)

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the server itself, or uvicorn's workers
        (started by multiprocessing's spawn; its resource tracker is a child too)."""
        if self.workers == 1:
            return [self.pid]
        return [pid for pid in children_of(self.pid) if "spawn_main" in command_line(pid)]

    def log_tail(self, limit: int = 4000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-limit:]

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL if it does not exit in time."""
        process, self._process = self._process, None
        if process is not None:
            try:
                end_group(process, STOP_TIMEOUT_S)
            finally:
                # interrupted while waiting (a second Ctrl-C): do not wait, do not leave it
                signal_group(process, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def running(app: str, env: Mapping[str, str], workers: int = 1) -> Iterator[ServerProcess]:
    server = ServerProcess(app, env, workers)
    try:
        server.start()
        yield server
    finally:
        server.stop()
