"""The demo `make run` shows: every story ends the way the demo says it does."""

from __future__ import annotations

import io

from service.demo.runner import BATCH, run_demo
from tests.e2e.harness import Api, RokService

EXPECTED = {
    "an agent that succeeds": ("COMPLETED", "COMPLETE", [], []),
    "succeeds, incidents domain muted": (
        "COMPLETED",
        "INCOMPLETE",
        [["incidents", "create_incident"]],
        [],
    ),
    "blows its cost budget mid-run": (
        "FAILED",
        "INCOMPLETE",
        [],
        [["policies", "evaluate_policy"]],
    ),
    "runs past its 1 s timeout": ("FAILED", "COMPLETE", [], []),
    "its tool raises": ("FAILED", "COMPLETE", [], []),
    "denied by policy": ("FAILED", "INCOMPLETE", [], [["policies", "evaluate_policy"]]),
}


def test_the_demo_tells_its_story_one_line_per_run(rok: RokService, api: Api) -> None:
    out = io.StringIO()
    report = run_demo(rok.url, out=out, governance_timeout_ms=500)

    assert sorted(report.submitted.values()) == sorted(story for _, story, _ in BATCH)
    assert len(report.finished) == len(BATCH)
    for run_id, story in report.submitted.items():
        run = api.get(run_id)
        phase, status, missing, failed = EXPECTED[story]
        reconciliation = run["reconciliation"]
        assert (run["phase"], reconciliation["status"]) == (phase, status), (story, run)
        assert (reconciliation["missing"], reconciliation["failed"]) == (missing, failed), story
    lines = out.getvalue().splitlines()
    assert (
        sum(1 for line in lines if line.startswith("  COMPLETED") or line.startswith("  FAILED"))
        == 6
    )
    assert f"{rok.url}/docs" in out.getvalue()
