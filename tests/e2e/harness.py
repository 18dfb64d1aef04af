"""What the end-to-end and crash tests share: a real service, a sync API client, fast pools.

Every wait here is bounded and polls for an outcome; nothing asserts on how
long something took. Every process started here has a lifeline
(service.bench.children): it dies with the test run, even one killed mid-test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from service.authority import Authority
from service.bench.children import lifeline, signal_group
from service.config import Settings
from service.domains import IncidentsDomain, PoliciesDomain, PolicySet, TracesDomain
from service.domains.base import Domain
from service.store.runs import RunFilter
from service.worker.execution import Handler
from service.worker.pool import WorkerPool
from tests.kernel.invariants import assert_run_valid
from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30.0
TERMINAL = ("COMPLETED", "FAILED")
FULL_PATH = ["AUTHORIZED", "EXECUTING", "GOVERNANCE_CHECK", "FINALIZING", "COMPLETED"]
DEFAULT_PAIRS = {
    ("incidents", "create_incident"),
    ("policies", "evaluate_policy"),
    ("logs", "start_trace"),
    ("logs", "complete_trace"),
    ("orchestrator", "finalize_run"),
}

SERVICE_ENV = {
    "ROK_SWEEP_INTERVAL_MS": "200",
    "ROK_AUTH": "off",
    "ROK_GOVERNANCE_TIMEOUT_MS": "1000",
}


class Api:
    """A sync client for assertions and for playing a (misbehaving) worker by hand."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=30.0)

    def close(self) -> None:
        self.http.close()

    def create(self, handler: str, **fields: Any) -> str:
        response = self.http.post("/runs", json={"handler": handler, **fields})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def get(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/runs/{run_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def fail(self, run_id: str, error: str) -> httpx.Response:
        return self.http.post(f"/runs/{run_id}/fail", json={"error": error})

    def wait_for(
        self, run_id: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = WAIT_S
    ) -> dict[str, Any]:
        """Poll the run until `done(run)`; fail the test (with the run) if it never is."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.get(run_id)
            if done(run):
                return run
            assert time.monotonic() < deadline, f"run never reached the expected state: {run}"
            time.sleep(0.02)

    def wait_for_phase(
        self, run_id: str, phases: Collection[str], timeout_s: float = WAIT_S
    ) -> dict[str, Any]:
        return self.wait_for(run_id, lambda run: run["phase"] in phases, timeout_s)

    def wait_terminal(self, run_id: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        return self.wait_for_phase(run_id, TERMINAL, timeout_s)


class RokService:
    """A rok server process on a migrated database, restartable on the same port."""

    def __init__(self, database_url: str, env: Mapping[str, str] | None = None) -> None:
        self.database_url = database_url
        self.env = {**SERVICE_ENV, **(env or {})}
        self.server = ServerProcess(database_url, self.env)
        self.url = self.server.base_url
        self.api = Api(self.url)

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.server.cleanup()

    def restart_later(self) -> ServerProcess:
        """A new server process for the same port and database (not started yet)."""
        server = ServerProcess(self.database_url, self.env)
        server.port = self.server.port
        server.base_url = self.server.base_url
        self.server = server
        return server

    def check_every_run(self) -> None:
        """Invariants 1 and 2 of DESIGN.md section 8 over every run in the database."""
        authority = Authority(Settings(database_url=self.database_url))
        try:
            cursor = None
            while True:
                records, cursor = authority.store.list(RunFilter(), 500, cursor)
                for record in records:
                    assert_run_valid(record)
                if cursor is None:
                    return
        finally:
            authority.close()


@contextlib.contextmanager
def rok_service(database_url: str, env: Mapping[str, str] | None = None) -> Iterator[RokService]:
    service = RokService(database_url, env)
    service.start()
    try:
        yield service
    finally:
        service.api.close()
        service.stop()
    service.check_every_run()


def reference(policies: Mapping[str, Any] | None = None) -> list[Domain]:
    rules = PolicySet.from_mapping(policies or {}, "test rules")
    return [PoliciesDomain(rules=rules), TracesDomain(), IncidentsDomain()]


def fast_pool(
    url: str,
    handlers: Mapping[str, Handler],
    domains: Sequence[Domain] | None = None,
    **settings: Any,
) -> WorkerPool:
    """A pool tuned for tests: short long-polls and leases, a bounded governance wait."""
    options: dict[str, Any] = {
        "concurrency": 4,
        "lease_ms": 3000,
        "claim_wait_ms": 300,
        "governance_timeout_ms": 2000,
        "domain_timeout_ms": 1000,
        "drain_timeout_s": 2.0,
        **settings,
    }
    return WorkerPool(url, handlers, domains=reference() if domains is None else domains, **options)


def phases(run: Mapping[str, Any]) -> list[str]:
    """The phases the run moved through (entries that start an attempt move nowhere)."""
    return [entry["to"] for entry in run["history"] if entry["kind"] == "transition"]


def acks_by_pair(run: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for ack in run["acks"]:
        pair = (ack["domain"], ack["action"])
        assert pair not in found, f"{pair} acked twice: {run['acks']}"
        found[pair] = ack
    return found


def start_worker_process(
    url: str, app: str, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`python -m service worker --app app --url url ...` in its own process group."""
    command = [sys.executable, "-m", "service", "worker", "--app", app, "--url", url, *args]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=lifeline(),
    )


def stop_process(process: subprocess.Popen[bytes]) -> str:
    """Kill a worker process (its group) if it still runs; return its output."""
    signal_group(process, signal.SIGKILL)
    output, _ = process.communicate(timeout=WAIT_S)
    return output.decode(errors="replace")
