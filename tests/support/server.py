"""A real rok server in a child process, for tests that need real HTTP and real restarts.

`running_server(url)` starts `python -m service serve` (uvicorn) on a free port
of 127.0.0.1 with ROK_DATABASE_URL=url, waits until /healthz answers, yields a
`ServerProcess`, and stops it with SIGTERM when the block ends. The server's
output goes to a log file whose tail is shown when it fails to start.

The server runs in a session of its own with a lifeline
(service.bench.children): a test run that is killed, or times out, where no
`finally` runs, takes its servers along instead of leaving them serving.
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
from pathlib import Path

import httpx

from service.bench.children import lifeline

START_TIMEOUT_S = 60.0  # a bound for a server that never answers, generous for a loaded machine
STOP_TIMEOUT_S = 15.0
START_ATTEMPTS = 3  # the free port may be taken between choosing it and binding it


class PortTaken(RuntimeError):
    pass


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "service", "serve", "--host", host, "--port", str(port)]


class ServerProcess:
    """One server child process; `start` and `stop` may be called once each."""

    def __init__(self, database_url: str, env: Mapping[str, str] | None = None) -> None:
        self.database_url = database_url
        self.host = "127.0.0.1"
        self.port = free_port()
        self.base_url = f"http://{self.host}:{self.port}"
        self._env = dict(env or {})
        self._log = Path(tempfile.mkstemp(prefix="rok-server-", suffix=".log")[1])
        self._process: subprocess.Popen[bytes] | None = None
        self._killed = False

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        env = {
            **os.environ,
            "ROK_DATABASE_URL": self.database_url,
            "PYTHONUNBUFFERED": "1",
            # as `make run` serves: on loopback, no key (tests of keys set ROK_AUTH)
            "ROK_AUTH": "off",
            **self._env,
        }
        root = Path(__file__).resolve().parents[2]
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                serve_command(self.host, self.port),
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=lifeline(),
            )
        try:
            self._wait_until_healthy()
        except BaseException:  # a timeout or Ctrl-C mid-start too: never leave it running
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            raise

    def _wait_until_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    if "address already in use" in self.log_text().lower():
                        raise PortTaken(self.log_tail())
                    raise RuntimeError(
                        f"rok server exited with {self._process.returncode} before it was "
                        f"healthy:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/healthz").status_code == 200:
                        return
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"rok server not healthy after {START_TIMEOUT_S}s:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM, wait for a clean exit (SIGKILL if it hangs); return the exit code."""
        process = self._process
        if process is None or self._killed:
            return None
        if process.poll() is not None:
            return process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(
                f"rok server ignored SIGTERM for {STOP_TIMEOUT_S}s:\n{self.log_tail()}"
            ) from None

    def kill(self) -> int:
        """SIGKILL: the process dies mid-whatever, as in a crash or an OOM kill."""
        assert self._process is not None
        self._killed = True
        self._process.kill()
        return self._process.wait()

    def log_text(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        try:
            return self._log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(empty log)"

    def client(self, timeout_s: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            self._log.unlink()


@contextlib.contextmanager
def running_server(
    database_url: str, env: Mapping[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A started server on `database_url`, stopped (SIGTERM) when the block ends."""
    for attempt in range(1, START_ATTEMPTS + 1):
        server = ServerProcess(database_url, env)
        try:
            server.start()
            break
        except PortTaken:
            server.cleanup()
            if attempt == START_ATTEMPTS:
                raise
        except BaseException:
            with contextlib.suppress(Exception):
                server.stop()
            server.cleanup()
            raise
    try:
        yield server
    finally:
        try:
            code = server.stop()
            # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM
            # is a clean exit; anything else means the server crashed on the way out.
            assert code in (None, 0, -signal.SIGTERM), (
                f"rok server exited with {code} on SIGTERM:\n{server.log_tail()}"
            )
        finally:
            server.cleanup()
