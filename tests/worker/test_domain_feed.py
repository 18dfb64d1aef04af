"""The reference domains as processes of their own, on the owed feed (service.worker.domain_feed).

In-process tests drive the app over an ASGI transport on both backends; the
last one runs `rok domain incidents` as a real process against a real server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.app import create_app
from service.authority import Authority
from service.domains import IncidentsDomain, PoliciesDomain, PolicySet, TracesDomain
from service.kernel.kernel import RunOrchestrationKernel, create_rok
from service.worker import Domain, Muted
from service.worker.client import RokClient
from service.worker.domain_cli import main as domain_main
from service.worker.domain_feed import DomainFeed, feed_domains
from tests.support.authorities import checked_authority
from tests.support.server import ServerProcess, running_server

URL = "http://127.0.0.1"
DOMAIN_COMMAND = (
    "import sys; from service.domains import reference_domains; "
    "from service.worker.domain_cli import main; sys.exit(main(sys.argv[1:], reference_domains))"
)


@pytest.fixture
def authority(migrated_url: str) -> Iterator[Authority]:
    with checked_authority(migrated_url, auth="off") as current:
        yield current


def ended_run(authority: Authority, error: str | None = None, **fields: Any) -> str:
    """A run driven by hand to GOVERNANCE_CHECK (failed with `error`, if given)."""
    kernel: RunOrchestrationKernel = create_rok(
        store=authority.store, settings=authority.settings, handler="report", **fields
    )
    kernel.declare_expectations()
    kernel.authorize("GRANTED", begin_execution=True)
    kernel.execution_complete(error is None, error)
    return kernel.run_id


def poll(authority: Authority, domain: Domain, *feeds: str) -> list[tuple[int, int]]:
    """One poll of each feed (answering at once), through the app over ASGI."""
    transport = httpx.ASGITransport(app=create_app(authority=authority, sweep=False))

    async def polls() -> list[tuple[int, int]]:
        async with RokClient(URL, transport=transport) as client:
            feed = DomainFeed(client, domain, wait_ms=0)
            return [await feed.poll_once(name) for name in feeds for _ in range(2)]

    return asyncio.run(polls())


def acks_of(authority: Authority, run_id: str) -> dict[tuple[str, str], Any]:
    return {a.pair: a for a in authority.store.get(run_id).acks}


def test_a_failed_run_gets_its_incident_and_a_clean_one_is_looked_at(
    authority: Authority,
) -> None:
    failed = ended_run(authority, "ValueError: boom")
    clean = ended_run(authority)
    assert poll(authority, IncidentsDomain(), "incidents") == [(2, 2), (0, 0)]

    incident = acks_of(authority, failed)[("incidents", "create_incident")]
    assert incident.result_id.startswith("inc-") and incident.error is None
    assert incident.details["kind"] == "handler_error"
    assert incident.details["summary"] == "ValueError: boom"
    assert incident.details["worker_id"].startswith("incidents-feed@")
    looked = acks_of(authority, clean)[("incidents", "create_incident")]
    assert looked.result_id is None
    assert ("policies", "evaluate_policy") not in acks_of(authority, failed)


def test_policies_and_traces_give_what_the_record_tells_them(authority: Authority) -> None:
    slow = ended_run(authority, "timeout: ran past 30000 ms")
    rules = PolicySet.from_mapping({"defaults": {"max_duration_ms": 0}})
    assert poll(authority, PoliciesDomain(rules=rules), "policies") == [(1, 1), (0, 0)]
    assert poll(authority, TracesDomain(), "logs") == [(1, 1), (0, 0)]

    acks = acks_of(authority, slow)
    evaluation = acks[("policies", "evaluate_policy")]
    assert evaluation.details["verdict"] == "VIOLATED"
    assert evaluation.details["observed"]["steps"] == 0  # steps stay in the worker's process
    started, completed = acks[("logs", "start_trace")], acks[("logs", "complete_trace")]
    assert started.result_id == completed.result_id  # one trace
    root = completed.details["spans"][0]
    run = authority.store.get(slow)
    entered = {entry.transition.to_phase.value: entry.transition.at for entry in run.history}
    assert root["start"] == entered["EXECUTING"].isoformat()
    assert root["end"] == entered["GOVERNANCE_CHECK"].isoformat()
    assert completed.details["outcome"] == "timeout"


def test_only_runs_whose_execution_ended_are_taken_up(authority: Authority) -> None:
    kernel = create_rok(store=authority.store, settings=authority.settings)
    kernel.declare_expectations()
    kernel.authorize("GRANTED", begin_execution=True)
    assert poll(authority, IncidentsDomain(), "incidents") == [(0, 0), (0, 0)]
    assert acks_of(authority, kernel.run_id).keys() == set()
    kernel.fail("abandoned")


def test_a_run_the_domain_saw_and_did_not_ack_is_not_taken_up_again(
    authority: Authority,
) -> None:
    run_id = ended_run(authority, "boom")
    silent = Muted(IncidentsDomain(), lambda _ctx: True)
    assert poll(authority, silent, "incidents") == [(1, 1), (1, 0)]
    assert acks_of(authority, run_id).keys() == set()


def test_a_domain_reads_the_feeds_of_the_pairs_it_acks() -> None:
    assert feed_domains(TracesDomain()) == ["logs"]
    assert feed_domains(IncidentsDomain()) == ["incidents"]
    assert feed_domains(Domain()) == ["domain"]


def test_the_command_refuses_an_unknown_domain_and_bad_numbers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from service.domains import reference_domains

    assert domain_main(["domain", "billing"], reference_domains) == 2
    assert (
        "no domain named 'billing'; known: incidents, policies, traces" in capsys.readouterr().err
    )
    for bad in (["--wait-ms", "60001"], ["--limit", "0"], ["--wait-ms", "soon"]):
        assert domain_main(["domain", "incidents", *bad], reference_domains) == 2
        assert bad[0] in capsys.readouterr().err


# -- end to end: a real server, a real `rok domain incidents` -------------------------


@pytest.fixture
def server(migrated_url: str) -> Iterator[ServerProcess]:
    with running_server(migrated_url) as current:
        yield current


def test_rok_domain_incidents_acks_a_failed_runs_incident(
    server: ServerProcess, tmp_path: Path
) -> None:
    """The governance check of a failed run, waiting on the server, passes because the
    incidents domain, a process of its own, acked the run's incident through the feed."""
    log = tmp_path / "domain.log"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "ROK_API_KEY": ""}
    with log.open("wb") as out:
        domain = subprocess.Popen(
            [sys.executable, "-c", DOMAIN_COMMAND, "domain", "incidents", "--url", server.base_url],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with server.client() as http:
            body = {
                "handler": "report",
                "expectations": [{"domain": "incidents", "action": "create_incident"}],
            }
            run_id = http.post("/runs", json=body).json()["id"]
            for step, move in [("authorize", {"decision": "GRANTED"}), ("begin-execution", None)]:
                assert http.post(f"/runs/{run_id}/{step}", json=move).status_code == 200
            failure = {"success": False, "error": "RuntimeError: the model went away"}
            assert http.post(f"/runs/{run_id}/execution-complete", json=failure).status_code == 200
            check = {"timeout_ms": 30_000, "require_all_acks": True}
            answer = http.post(f"/runs/{run_id}/governance-check", json=check).json()
            assert answer["passed"] is True, (answer, log.read_text())
            run = http.get(f"/runs/{run_id}").json()
        (ack,) = [a for a in run["acks"] if a["domain"] == "incidents"]
        assert ack["result_id"].startswith("inc-")
        assert ack["details"]["summary"] == "RuntimeError: the model went away"
        with server.client() as http:
            http.post(f"/runs/{run_id}/finalize", json={"success": False})
    finally:
        domain.send_signal(signal.SIGTERM)
        code = domain.wait(30)
    assert code == 0, log.read_text()
