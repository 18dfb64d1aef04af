"""The service restarts while a pool is mid-run: the pool retries and finishes every run once."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e import apps
from tests.e2e.harness import acks_by_pair, fast_pool, phases, rok_service

RUNS = 4


def test_the_pool_rides_out_a_service_restart_without_losing_or_doubling_anything(
    migrated_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "release"
    with rok_service(migrated_url) as rok:
        api = rok.api
        ids = [api.create("wait_for_file", input={"marker": str(marker)}) for _ in range(RUNS)]
        # leases far longer than the outage: the sweeper must not take the runs away
        pool = fast_pool(rok.url, apps.handlers, concurrency=RUNS, lease_ms=20_000)
        with pool.running():
            for run_id in ids:
                api.wait_for_phase(run_id, ["EXECUTING"])
            rok.server.stop()
            marker.touch()  # the handlers finish while the service is down
            time.sleep(1.0)  # long enough for their calls to fail and back off
            rok.restart_later().start()
            finals = [api.wait_terminal(run_id) for run_id in ids]
            after = api.create("sleeper", input={"seconds": 0})
            api.wait_terminal(after)
        results = list(pool.results)

    for run in finals:
        assert run["phase"] == "COMPLETED", run
        assert phases(run) == [
            "AUTHORIZED",
            "EXECUTING",
            "GOVERNANCE_CHECK",
            "FINALIZING",
            "COMPLETED",
        ]
        acks_by_pair(run)  # raises on any pair acked twice
        assert run["reconciliation"]["status"] == "COMPLETE", run["reconciliation"]
    assert sorted(r.run_id for r in results) == sorted([*ids, after])
    assert not any(r.lost for r in results)
