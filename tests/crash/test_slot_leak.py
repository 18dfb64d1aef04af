"""Slots never leak: worker processes holding concurrency slots are SIGKILLed, and once
the sweeper has taken their leases back every key's in_use is zero again.

Real processes (`rok worker`) against a real server; a watcher reads GET /limits
throughout and no key is ever seen past its limit. Leases are short and the
sweeper fast, so the short form takes seconds; the slow one kills in rounds.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import RokService, rok_service, start_worker_process, stop_process

LEASE_MS = 2000
GPU_LIMIT = 2
TENANT_LIMIT = 2
SERVICE_ENV = {"ROK_SWEEP_INTERVAL_MS": "100", "ROK_TENANT_CONCURRENCY": str(TENANT_LIMIT)}
WAIT_S = 60.0
FULL = {"tenant:a": TENANT_LIMIT, "tenant:b": TENANT_LIMIT, "gpu": GPU_LIMIT}


@pytest.fixture
def rok(migrated_url: str) -> Iterator[RokService]:
    with rok_service(migrated_url, SERVICE_ENV) as service:
        yield service


def start_worker(rok: RokService, concurrency: int) -> subprocess.Popen[bytes]:
    return start_worker_process(
        rok.url,
        "tests.e2e.apps:handlers",
        "--concurrency",
        str(concurrency),
        "--lease-ms",
        str(LEASE_MS),
        "--drain-timeout",
        "1",
    )


class LimitWatcher:
    """Reads GET /limits until stopped; keeps every key's highest in_use against its limit."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10.0)
        self.over: list[dict[str, Any]] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> LimitWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.http.close()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for item in self.http.get("/limits").json()["items"]:
                limit = item["effective_max"]
                if limit is not None and item["in_use"] > limit:
                    self.over.append(item)
            self.samples += 1
            time.sleep(0.01)


def in_use(rok: RokService) -> dict[str, int]:
    answer = rok.api.http.get("/limits")
    assert answer.status_code == 200, answer.text
    return {item["key"]: item["in_use"] for item in answer.json()["items"]}


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def create_runs(rok: RokService, count: int, marker: Path) -> list[str]:
    """Runs that wait for `marker`, half of them holding the gpu key, over two tenants."""
    return [
        rok.api.create(
            "wait_for_file",
            input={"marker": str(marker)},
            tenant_id=("a", "b")[i % 2],
            concurrency_keys=["gpu"] if i % 4 < 2 else [],
            max_attempts=3,
        )
        for i in range(count)
    ]


def kill_holders_and_finish(rok: RokService, tmp_path: Path, runs: int, rounds: int) -> None:
    assert rok.api.http.put("/limits/gpu", json={"max_concurrent": GPU_LIMIT}).status_code == 200
    marker = tmp_path / "go"
    run_ids = create_runs(rok, runs, marker)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with LimitWatcher(rok.url) as watcher:
            for round_number in range(rounds):
                doomed = start_worker(rok, concurrency=2 * TENANT_LIMIT)
                workers.append(doomed)
                # it holds every slot the tenants allow, gpu's among them
                wait_until(
                    lambda: {k: v for k, v in in_use(rok).items() if k in FULL} == FULL,
                    f"round {round_number}: the doomed worker holds every slot",
                )
                doomed.kill()
                doomed.wait()
                # the sweeper takes the dead worker's leases back, and their slots with them
                wait_until(
                    lambda: not any(in_use(rok).values()),
                    f"round {round_number}: every slot given back after the kill",
                )
            marker.touch()
            survivor = start_worker(rok, concurrency=2)
            workers.append(survivor)
            for run_id in run_ids:
                assert rok.api.wait_terminal(run_id, WAIT_S)["phase"] in {"COMPLETED", "FAILED"}
        assert watcher.samples > 0 and watcher.over == []
        assert in_use(rok) == {"gpu": 0, "tenant:a": 0, "tenant:b": 0}
        attempts = [rok.api.get(run_id)["attempt"] for run_id in run_ids]
        assert max(attempts) > 1  # killed runs came back as further attempts
    finally:
        for worker in workers:
            stop_process(worker)


def test_slots_held_by_a_killed_worker_all_come_back(rok: RokService, tmp_path: Path) -> None:
    kill_holders_and_finish(rok, tmp_path, runs=8, rounds=1)


@pytest.mark.slow
def test_slots_come_back_through_rounds_of_killed_workers(rok: RokService, tmp_path: Path) -> None:
    kill_holders_and_finish(rok, tmp_path, runs=24, rounds=2)
