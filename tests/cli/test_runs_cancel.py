"""`rok runs cancel ID [--reason]` against POST /runs/{id}/cancel (DESIGN section 11)."""

from __future__ import annotations

from service.model.phases import RunPhase
from tests.cli.conftest import Served
from tests.support.runs import RunFactory


def test_cancel_fails_a_run_that_is_not_executing_and_a_second_cancel_says_no(
    served: Served,
) -> None:
    run_id = RunFactory(served.authority).at(RunPhase.CREATED)

    cancelled = served.rok("runs", "cancel", run_id, "--reason", "no longer needed")
    again = served.rok("runs", "cancel", run_id)

    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"run {run_id}: FAILED (cancelled")
    record = served.authority.store.get(run_id)
    assert record.phase is RunPhase.FAILED
    assert record.row.error is not None and record.row.error.startswith("cancelled")
    assert "no longer needed" in record.row.error
    assert again.returncode == 1
    assert again.stderr.startswith(f"rok: POST /runs/{run_id}/cancel: 409 ")


def test_cancel_of_an_unknown_run_exits_3(served: Served) -> None:
    done = served.rok("runs", "cancel", "00000000-0000-4000-8000-000000000000")

    assert done.returncode == 3
    assert "404" in done.stderr
