"""`rok runs ls|show|fail` against a real server: tables, timelines, exit codes, refusals."""

from __future__ import annotations

import json
import uuid

import pytest

from service.model.phases import RunPhase
from tests.cli.conftest import Served, rok
from tests.support.chains import lifecycle
from tests.support.runs import RunFactory
from tests.support.server import free_port

PHASES_OF_A_LIFECYCLE = [
    "CREATED",
    "AUTHORIZED",
    "EXECUTING",
    "GOVERNANCE_CHECK",
    "FINALIZING",
    "COMPLETED",
]


def handler() -> str:
    """A handler name of the test's own, so a filter on it sees only the test's runs."""
    return f"h-{uuid.uuid4().hex[:8]}"


def test_ls_lists_runs_newest_first_and_filters_them(served: Served) -> None:
    factory, name = RunFactory(served.authority), handler()
    created = factory.at(RunPhase.CREATED, handler=name, tenant_id="acme")
    failed = factory.at(RunPhase.FAILED, handler=name, tenant_id="acme")
    other = factory.at(RunPhase.CREATED, handler=name, tenant_id="other")

    table = served.rok("runs", "ls", "--handler", name)
    by_phase = served.rok("runs", "ls", "--handler", name, "--phase", "failed", "--json")
    by_tenant = served.rok("runs", "ls", "--handler", name, "--tenant", "other", "--json")
    limited = served.rok("runs", "ls", "--handler", name, "--limit", "2", "--json")

    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "ID", "PHASE", "TENANT", "HANDLER", "ATTEMPT", "CREATED", "EVIDENCE", "ERROR",
    ]  # fmt: skip
    assert [row.split()[:4] for row in rows] == [
        [other, "CREATED", "other", name],
        [failed, "FAILED", "acme", name],
        [created, "CREATED", "acme", name],
    ]
    assert rows[1].endswith("made to fail")
    assert [r["id"] for r in json.loads(by_phase.stdout)] == [failed]
    assert [r["id"] for r in json.loads(by_tenant.stdout)] == [other]
    assert [r["id"] for r in json.loads(limited.stdout)] == [other, failed]


def test_ls_reads_as_many_pages_as_its_limit_needs(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory, name = RunFactory(served.authority), handler()
    made = [factory.at(RunPhase.CREATED, handler=name) for _ in range(5)]
    monkeypatch.setattr("service.ops_cli.remote.PAGE_LIMIT", 2)

    everything = served.rok("runs", "ls", "--handler", name, "--limit", "10", "--json")
    three = served.rok("runs", "ls", "--handler", name, "--limit", "3", "--json")

    assert [r["id"] for r in json.loads(everything.stdout)] == made[::-1]
    assert [r["id"] for r in json.loads(three.stdout)] == made[::-1][:3]


def test_show_draws_the_timeline_the_contract_against_the_acks_and_the_verdict(
    served: Served,
) -> None:
    run_id = lifecycle(served.authority)

    done = served.rok("runs", "show", run_id)
    as_json = served.rok("runs", "show", run_id, "--json")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"run {run_id}"
    start = lines.index("timeline")
    assert lines[start + 1].split() == ["AT", "ELAPSED", "PHASE", "FOR", "ATTEMPT", "REASON"]
    timeline = lines[start + 2 : start + 2 + len(PHASES_OF_A_LIFECYCLE)]
    assert [line.split()[3] for line in timeline] == PHASES_OF_A_LIFECYCLE
    assert timeline[0].split()[2] == "+0ms"
    assert timeline[-1].split()[4] == "-"  # a terminal phase lasts no time
    incidents = next(line for line in lines if line.strip().startswith("incidents/"))
    assert incidents.split()[0] == "incidents/create_incident"
    assert "ACKED" in incidents and incidents.endswith("inc-1")
    assert any(line.startswith("governance  PASSED at ") for line in lines)
    assert lines[-1] == "evidence    COMPLETE"
    assert as_json.returncode == 0
    run = json.loads(as_json.stdout)
    assert run["id"] == run_id and run["phase"] == "COMPLETED"
    assert [h["to"] for h in run["history"]] == PHASES_OF_A_LIFECYCLE[1:]


def test_show_of_a_live_run_counts_its_phase_up_to_now(served: Served) -> None:
    run_id = RunFactory(served.authority).at(RunPhase.EXECUTING, handler=handler())

    done = served.rok("runs", "show", run_id)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    last = lines[lines.index("timeline") + 4]
    assert last.split()[3] == "EXECUTING" and last.split()[5] == "…"
    assert "governance  not checked" in lines


def test_fail_fails_a_live_run_once_and_then_says_no(served: Served) -> None:
    run_id = RunFactory(served.authority).at(RunPhase.EXECUTING, handler=handler())

    failed = served.rok("runs", "fail", run_id, "--reason", "stuck on a lock")
    again = served.rok("runs", "fail", run_id, "--reason", "twice")

    assert failed.returncode == 0, failed.stderr
    assert failed.stdout.strip() == f"run {run_id}: FAILED (stuck on a lock)"
    assert again.returncode == 1
    assert again.stderr.startswith(f"rok: POST /runs/{run_id}/fail: 409 ")
    assert "FAILED" in again.stderr
    record = served.authority.store.get(run_id)
    assert (record.phase, record.row.error) == (RunPhase.FAILED, "stuck on a lock")


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["runs", "show", "00000000-0000-4000-8000-000000000000"], 3, "404"),
        (["runs", "fail", "00000000-0000-4000-8000-000000000000", "--reason", "x"], 3, "404"),
        (["runs", "show", "not-a-run"], 2, "'not-a-run' is not a run id"),
        (["runs", "fail", "00000000-0000-4000-8000-000000000000"], 2, "'--reason'"),
        (["runs", "ls", "--phase", "DONE"], 2, "'DONE' is not one of"),
        (["runs", "ls", "--limit", "0"], 2, "--limit"),
    ],
)
def test_bad_input_exits_with_the_code_that_says_what_is_wrong(
    served: Served, args: list[str], code: int, says: str
) -> None:
    done = served.rok(*args)

    assert done.returncode == code, done.stdout + done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_service_exits_5_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    done = rok("runs", "ls", "--url", url)

    assert done.returncode == 5
    assert done.stderr.startswith(f"rok: cannot reach the rok service at {url}")
