"""rok installed from its wheel into a fresh virtualenv outside the checkout.

`build_wheel` builds the wheel from the checkout with this venv's pip and
hatchling (no build isolation, so nothing is downloaded). `install` makes a
virtualenv without pip in a temporary directory and installs the wheel alone
(`--no-deps`) with this interpreter's pip. rok's dependencies are the ones this
venv already has: a .pth line puts this venv's site-packages after the new
venv's own. A .pth line only adds the directory; the .pth files inside it, the
editable install's pointer to the checkout among them, are not read, so
`service` can only come from the wheel (the tests check where it comes from).

Every command runs from a directory outside the checkout, without PYTHONPATH
or any ROK_* variable of the caller's environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import sysconfig
import time
import venv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.bench.children import lifeline

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_S = 120.0
START_TIMEOUT_S = 60.0  # a bound for a server that never answers, generous for a loaded machine
STOP_TIMEOUT_S = 15.0


def build_wheel(out: Path) -> Path:
    """rok's wheel, built from the checkout into `out`."""
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"]
    subprocess.run(
        [*pip_wheel, "--no-build-isolation", "--wheel-dir", str(out), str(REPO_ROOT)],
        check=True,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    (wheel,) = out.glob("rok-*.whl")
    return wheel


@dataclass(frozen=True)
class InstalledRok:
    venv: Path
    home: Path
    """The working directory of every command: outside the checkout."""

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        kept = {
            name: value
            for name, value in os.environ.items()
            if name not in ("PYTHONPATH", "PYTHONHOME") and not name.startswith("ROK_")
        }
        path = os.pathsep.join([str(self.bin), kept.get("PATH", os.defpath)])
        return {**kept, "PATH": path, "PYTHONNOUSERSITE": "1", **(extra or {})}

    def run(
        self, command: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`command` (looked up on the venv's bin first) to its end; never raises on failure."""
        return subprocess.run(
            command,
            cwd=self.home,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )

    def rok(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run([str(self.bin / "rok"), *args], env)

    def python(self, code: str) -> str:
        """What `code` prints, run by the venv's interpreter."""
        done = self.run([str(self.bin / "python"), "-c", code])
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    @contextlib.contextmanager
    def serving(
        self, command: list[str], port: int, env: Mapping[str, str] | None = None
    ) -> Iterator[httpx.Client]:
        """`command` started as a server on `port`; a client once /healthz answers.

        The block ends with SIGTERM to the process started, which must then
        exit cleanly (uvicorn shuts down gracefully and re-raises the signal:
        -SIGTERM; or 0) and leave nothing serving on the port.
        """
        log = self.home / f"server-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=self.home,
                env=self.env(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=lifeline(),
            )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
                _wait_until_healthy(process, client, log)
                yield client
                process.send_signal(signal.SIGTERM)
                _wait_without_reaping(process, log)
                # nothing it started goes on serving (as a shell that did not exec would)
                with pytest.raises(httpx.ConnectError):
                    client.get("/healthz")
        finally:
            # Not reaped yet, so its pid still names its group: whatever it left behind
            # dies with it (and it too, after a failed start or assertion).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
        assert code in (0, -signal.SIGTERM), f"exit {code} on SIGTERM:\n{log.read_text()}"


def _wait_without_reaping(process: subprocess.Popen[bytes], log: Path) -> None:
    """Until `process` has exited, leaving it a zombie for the caller to reap."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"still running {STOP_TIMEOUT_S}s after SIGTERM:\n{log.read_text()}"
            )
        time.sleep(0.05)


def _wait_until_healthy(process: subprocess.Popen[bytes], client: httpx.Client, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode} before serving:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if client.get("/healthz").status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"not healthy after {START_TIMEOUT_S}s:\n{log.read_text()}")


def install(wheel: Path, root: Path) -> InstalledRok:
    """A new virtualenv in `root`/venv holding rok from `wheel`."""
    target = root / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    pip_install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    subprocess.run(
        [*pip_install, "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    dependencies = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    pth = Path(site_packages, "rok-test-dependencies.pth")
    pth.write_text("".join(f"{directory}\n" for directory in dependencies))
    home = root / "home"
    home.mkdir()
    return InstalledRok(target, home)
