"""What `rok worker` composes: a handler dict runs with the three reference domains."""

from __future__ import annotations

from pathlib import Path

from service.domains import IncidentsDomain, PoliciesDomain, TracesDomain
from service.domains.defaults import reference_domains
from service.worker.cli import WorkerCommand, load_app, worker_command

handlers = {"job": lambda ctx: "ok"}
REFERENCE = [PoliciesDomain, TracesDomain, IncidentsDomain]


def test_the_rok_worker_command_runs_a_handler_dict_with_the_reference_domains() -> None:
    from service.cli import rok

    command = rok.commands["worker"]
    assert isinstance(command, WorkerCommand)
    args = command.options(["--app", f"{__name__}:handlers"])
    assert [type(d) for d in load_app(args).domains] == REFERENCE
    args = command.options(["--app", f"{__name__}:handlers", "--no-domains"])
    assert load_app(args).domains == []


def test_the_policy_file_reaches_the_policies_domain(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("kill_switch = true\n")
    command = worker_command(reference_domains)
    args = command.options(["--app", f"{__name__}:handlers", "--policies", str(rules)])
    domains = load_app(args).domains
    assert [type(d) for d in domains] == REFERENCE
    policies = domains[0]
    assert isinstance(policies, PoliciesDomain) and policies.rules.kill_switch
