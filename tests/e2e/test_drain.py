"""SIGTERM drains a worker process: no new claims, finishing handlers finish, the rest fail."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.e2e.harness import Api, RokService, start_worker_process, stop_process

DRAIN_S = "3"


def test_sigterm_stops_claiming_lets_running_handlers_finish_and_fails_the_rest(
    rok: RokService, api: Api, tmp_path: Path
) -> None:
    marker = tmp_path / "release"
    finishing = api.create("wait_for_file", input={"marker": str(marker)})
    stuck = api.create("stuck")
    worker = start_worker_process(
        rok.url,
        "tests.e2e.apps:handlers",
        "--concurrency",
        "2",
        "--drain-timeout",
        DRAIN_S,
        "--lease-ms",
        "3000",
    )
    try:
        api.wait_for_phase(finishing, ["EXECUTING"])
        api.wait_for_phase(stuck, ["EXECUTING"])
        worker.send_signal(signal.SIGTERM)
        marker.touch()  # only now can the first handler finish: inside the drain
        waiting = api.create("sleeper", input={"seconds": 0})
        code = worker.wait(timeout=60)
    finally:
        output = stop_process(worker)

    assert code == 0, output
    assert api.get(finishing)["phase"] == "COMPLETED", output
    failed = api.get(stuck)
    assert failed["phase"] == "FAILED", output
    assert failed["error"].startswith("worker shutting down: worker "), failed["error"]
    assert "drain timeout (3s) passed" in failed["error"]
    assert [i["kind"] for i in failed["incidents"]] == ["shutdown"]
    assert not any(ack["late"] for ack in failed["acks"]), "the evidence came before the fail"
    untouched = api.get(waiting)
    assert untouched["phase"] == "CREATED" and untouched["lease"] is None, "no claim after SIGTERM"
