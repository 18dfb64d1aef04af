"""A worker process killed with SIGKILL mid-run, while another worker process runs.

The service must notice (lease expiry, the sweeper), fail the run with
"worker lost" or hand it to the other worker as a new attempt, refuse every
late call of the dead worker's token, and never let two live workers hold
one run. Leases are short and the sweeper fast, so this takes seconds.
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

from service.authority import Authority
from service.config import Settings
from tests.e2e.harness import (
    WAIT_S,
    Api,
    RokService,
    phases,
    rok_service,
    start_worker_process,
    stop_process,
)

LEASE_MS = 2000  # heartbeats every 667 ms: margin for a loaded machine
SERVICE_ENV = {"ROK_SWEEP_INTERVAL_MS": "100"}


@pytest.fixture
def rok(migrated_url: str) -> Iterator[RokService]:
    with rok_service(migrated_url, SERVICE_ENV) as service:
        yield service


def start_worker(rok: RokService, concurrency: int = 1) -> subprocess.Popen[bytes]:
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


def pid_of(worker_id: str | None) -> int | None:
    """Worker ids are host/pid-N/suffix (service.worker.pool.default_worker_id)."""
    if worker_id is None:
        return None
    return int(worker_id.split("/")[1].removeprefix("pid-"))


def lease_token(rok: RokService, run_id: str) -> str:
    """The dead worker's fencing token, read where only the service keeps it."""
    authority = Authority(Settings(database_url=rok.database_url))
    try:
        lease = authority.store.get(run_id).row.lease
        assert lease is not None
        return lease.token
    finally:
        authority.close()


class LeaseWatcher:
    """Samples who holds each run's lease, marking the moment a worker was killed."""

    def __init__(self, api: Api, run_ids: list[str]) -> None:
        self.http = httpx.Client(base_url=api.base_url, timeout=10.0)
        self.run_ids = run_ids
        self.samples: list[tuple[str, int | None, bool]] = []  # run, holder pid, after kill
        self.killed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> LeaseWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.http.close()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for run_id in self.run_ids:
                after_kill = self.killed.is_set()  # read before the sample: conservative
                run = self.http.get(f"/runs/{run_id}").json()
                holder = pid_of((run.get("lease") or {}).get("worker_id"))
                self.samples.append((run_id, holder, after_kill))
            time.sleep(0.01)

    def holders(self, run_id: str) -> list[tuple[int, bool]]:
        return [(pid, after) for rid, pid, after in self.samples if rid == run_id and pid]


def assert_one_worker_per_attempt(run: dict[str, Any]) -> dict[int, str]:
    """Every ack of one attempt came from one worker, and attempts never interleave."""
    by_attempt: dict[int, set[str]] = {}
    attempts_in_order = []
    for ack in sorted(run["acks"], key=lambda a: a["at"]):
        details = ack.get("details") or {}
        if "worker_id" in details:
            by_attempt.setdefault(details["attempt"], set()).add(details["worker_id"])
            attempts_in_order.append(details["attempt"])
    assert attempts_in_order == sorted(attempts_in_order), run["acks"]
    history_attempts = [entry["attempt"] for entry in run["history"]]
    assert history_attempts == sorted(history_attempts), run["history"]
    for attempt, workers in by_attempt.items():
        assert len(workers) == 1, f"attempt {attempt} acked by {workers}"
    return {attempt: next(iter(workers)) for attempt, workers in by_attempt.items()}


def assert_fenced(api: Api, run_id: str, token: str) -> None:
    """The dead worker's late calls are refused and change nothing."""
    before = api.get(run_id)
    headers = {"X-Lease-Token": token}
    late_moves = [
        ("execution-complete", {"success": True}),
        ("finalize", {"success": True}),
        ("fail", {"error": "late news from a dead worker"}),
    ]
    for step, body in late_moves:
        response = api.http.post(f"/runs/{run_id}/{step}", json=body, headers=headers)
        assert response.status_code == 409, (step, response.text)
    beat = api.http.post(
        f"/runs/{run_id}/heartbeat", json={"worker_id": "dead", "lease_token": token}
    )
    assert beat.status_code == 409
    after = api.get(run_id)
    assert (after["phase"], after["history"], after["error"]) == (
        before["phase"],
        before["history"],
        before["error"],
    )


def test_a_killed_worker_s_run_fails_with_worker_lost_and_the_other_worker_goes_on(
    rok: RokService,
) -> None:
    api = rok.api
    run_id = api.create("crash_once")
    doomed = start_worker(rok)
    survivor: subprocess.Popen[bytes] | None = None
    try:
        running = api.wait_for(run_id, lambda r: r["phase"] == "EXECUTING" and r["lease"])
        assert pid_of(running["lease"]["worker_id"]) == doomed.pid
        survivor = start_worker(rok)
        token = lease_token(rok, run_id)
        doomed.kill()
        doomed.wait()

        failed = api.wait_terminal(run_id)
        assert failed["phase"] == "FAILED"
        assert failed["error"].startswith("worker lost: lease of worker "), failed["error"]
        assert failed["history"][-1]["reason"].startswith("failed: worker lost")
        assert phases(failed) == ["AUTHORIZED", "EXECUTING", "FAILED"]
        assert_fenced(api, run_id, token)

        other = api.create("sleeper", input={"seconds": 0})
        assert api.wait_terminal(other)["phase"] == "COMPLETED"
        workers = assert_one_worker_per_attempt(api.get(other))
        assert pid_of(workers[1]) == survivor.pid
        assert survivor.poll() is None
    finally:
        stop_process(doomed)
        if survivor is not None:
            stop_process(survivor)


def test_a_killed_worker_s_run_completes_on_a_second_attempt_by_the_other_worker(
    rok: RokService,
) -> None:
    api = rok.api
    run_id = api.create("crash_once", max_attempts=2)
    doomed = start_worker(rok)
    survivor: subprocess.Popen[bytes] | None = None
    try:
        with LeaseWatcher(api, [run_id]) as watcher:
            running = api.wait_for(run_id, lambda r: r["phase"] == "EXECUTING" and r["lease"])
            assert pid_of(running["lease"]["worker_id"]) == doomed.pid
            survivor = start_worker(rok)
            token = lease_token(rok, run_id)
            watcher.killed.set()
            doomed.kill()
            doomed.wait()
            done = api.wait_terminal(run_id)

        assert done["phase"] == "COMPLETED" and done["attempt"] == 2, done
        assert phases(done) == [
            "AUTHORIZED",
            "EXECUTING",
            "GOVERNANCE_CHECK",
            "FINALIZING",
            "COMPLETED",
        ]
        # the new attempt is recorded in place (EXECUTING -> EXECUTING), then its moves
        assert [e["attempt"] for e in done["history"]] == [1, 1, 2, 2, 2, 2]
        assert done["reconciliation"]["status"] == "COMPLETE", done["reconciliation"]
        workers = assert_one_worker_per_attempt(done)
        assert pid_of(workers[1]) == doomed.pid and pid_of(workers[2]) == survivor.pid
        holders = watcher.holders(run_id)
        assert all(pid == doomed.pid for pid, after in holders if not after)
        survivor_seen = [i for i, (pid, _) in enumerate(holders) if pid == survivor.pid]
        assert survivor_seen, "the survivor was never seen holding the run"
        assert all(pid == survivor.pid for pid, _ in holders[survivor_seen[0] :])
        assert_fenced(api, run_id, token)
    finally:
        stop_process(doomed)
        if survivor is not None:
            stop_process(survivor)


def held_by(api: Api, run_ids: list[str], pid: int) -> set[str]:
    """The runs whose lease the worker process `pid` holds now."""
    return {r for r in run_ids if pid_of((api.get(r).get("lease") or {}).get("worker_id")) == pid}


def wait_until_holding(api: Api, run_ids: list[str], pid: int, count: int) -> set[str]:
    """Poll until worker `pid` holds `count` runs (bounded like every wait of the harness)."""
    deadline = time.monotonic() + WAIT_S
    while len(held := held_by(api, run_ids, pid)) < count:
        assert time.monotonic() < deadline, f"worker {pid} holds only {held} after {WAIT_S}s"
        time.sleep(0.02)
    return held


def test_every_run_of_a_batch_ends_once_when_one_of_two_workers_dies(
    rok: RokService, tmp_path: Path
) -> None:
    """Twelve runs, two workers of two slots; one is killed while it holds two runs.

    Every handler waits for a file the test creates only after the kill, so
    the doomed worker dies in the middle of exactly the runs it holds, however
    loaded the machine: it cannot have finished one, nor sent the acks that
    follow a handler. Those runs end on a second attempt, which the survivor
    drove and acked; every other run is the survivor's alone.
    """
    api = rok.api
    marker = tmp_path / "release"
    run_ids = [
        api.create("wait_for_file", input={"marker": str(marker)}, max_attempts=2)
        for _ in range(12)
    ]
    doomed = start_worker(rok, concurrency=2)
    survivor = start_worker(rok, concurrency=2)
    try:
        # the handlers wait, so each worker ends up holding two runs and keeps them
        wait_until_holding(api, run_ids, doomed.pid, 2)
        wait_until_holding(api, run_ids, survivor.pid, 2)
        held = held_by(api, run_ids, doomed.pid)
        doomed.kill()
        doomed.wait()
        marker.touch()
        finals = {run_id: api.wait_terminal(run_id) for run_id in run_ids}
    finally:
        stop_process(doomed)
        stop_process(survivor)

    assert len(held) == 2, held
    assert [run["phase"] for run in finals.values()] == ["COMPLETED"] * len(run_ids), [
        (run["id"], run["phase"], run["error"]) for run in finals.values()
    ]
    for run_id, run in finals.items():
        workers = {a: pid_of(w) for a, w in assert_one_worker_per_attempt(run).items()}
        finalize = [a for a in run["acks"] if a["domain"] == "orchestrator"]
        assert len(finalize) == 1, run["acks"]
        if run_id in held:
            assert run["attempt"] == 2, run
            assert workers.get(1, doomed.pid) == doomed.pid, workers  # what it acked in time
            assert workers[2] == survivor.pid, workers  # the acks after the handler: the survivor's
        else:
            # one attempt, as a rule; a second only if the survivor's own lease lapsed under load
            assert set(workers.values()) == {survivor.pid}, workers


# -- churn: workers killed again and again while runs stream through -------------------


def churn(rok: RokService, runs: int, kills: int) -> None:
    """Two worker processes; `kills` times, one holding a run is killed and replaced.

    Every run may lose one attempt per kill at most, so with kills + 1
    attempts each must end COMPLETED, once, each attempt driven by one worker.
    """
    api = rok.api
    run_ids = [
        api.create("sleeper", input={"seconds": 0.2}, max_attempts=kills + 1) for _ in range(runs)
    ]
    workers = [start_worker(rok, concurrency=2), start_worker(rok, concurrency=2)]
    killed: list[int] = []
    try:
        for kill in range(kills):
            slot = kill % 2
            victim = workers[slot]

            def holds_a_run(_: dict[str, Any], pid: int = victim.pid) -> bool:
                held = [pid_of((api.get(r).get("lease") or {}).get("worker_id")) for r in run_ids]
                live = [api.get(r)["phase"] not in ("COMPLETED", "FAILED") for r in run_ids]
                return pid in held or not any(live)

            api.wait_for(run_ids[0], holds_a_run)
            stop_process(victim)  # SIGKILL, then its output pipe is closed
            killed.append(victim.pid)
            workers[slot] = start_worker(rok, concurrency=2)
        finals = [api.wait_terminal(run_id) for run_id in run_ids]
    finally:
        for worker in workers:
            stop_process(worker)

    assert [run["phase"] for run in finals] == ["COMPLETED"] * runs, [
        (run["id"], run["phase"], run["error"]) for run in finals if run["phase"] != "COMPLETED"
    ]
    for run in finals:
        by_attempt = assert_one_worker_per_attempt(run)
        assert run["attempt"] <= kills + 1
        finalize = [a for a in run["acks"] if a["domain"] == "orchestrator"]
        assert len(finalize) == 1, run["acks"]
        # only the last attempt finished the run: every earlier one lost its worker
        for attempt, worker_id in by_attempt.items():
            if attempt < run["attempt"]:
                assert pid_of(worker_id) in killed, (attempt, worker_id, killed)


def test_runs_survive_workers_killed_twice_while_they_stream_through(rok: RokService) -> None:
    churn(rok, runs=12, kills=2)


@pytest.mark.slow
def test_soak_runs_survive_workers_killed_ten_times(rok: RokService) -> None:
    churn(rok, runs=80, kills=10)
