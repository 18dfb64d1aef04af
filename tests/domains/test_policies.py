"""Policy rules: parsed strictly, evaluated before (denial), during (limits) and after."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.domains.policies import DENIED_BY_POLICY, PoliciesDomain, PolicyError, PolicySet
from service.worker import Decision, Limits, Outcome, OutcomeKind
from tests.worker.fakes import FakeAcks, make_context

RULES_TOML = """
allowed_handlers = ["agent", "report"]

[defaults]
max_cost = 5.0
max_steps = 10

[handlers.report]
max_cost = 1
max_duration_ms = 2000

[handlers.legacy]
kill_switch = true
"""

RULES_YAML = """
allowed_handlers: [agent, report]
defaults: {max_cost: 5.0, max_steps: 10}
handlers:
  report: {max_cost: 1, max_duration_ms: 2000}
  legacy: {kill_switch: true}
"""


@pytest.fixture(params=["toml", "yaml"])
def rules_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"rules.{request.param}"
    path.write_text(RULES_TOML if request.param == "toml" else RULES_YAML)
    return path


def test_handler_rules_inherit_the_defaults(rules_file: Path) -> None:
    rules = PolicySet.load(rules_file)
    assert rules.rules_for("report").limits() == Limits(1.0, 10, 2000)
    assert rules.rules_for("agent").limits() == Limits(5.0, 10, None)
    assert rules.source == str(rules_file)


def test_denials_name_the_rule(rules_file: Path) -> None:
    rules = PolicySet.load(rules_file)
    assert rules.denial("agent") is None
    assert rules.denial("legacy") == f"the kill switch of handler 'legacy' is on ({rules_file})"
    assert rules.denial("other") == f"handler 'other' is not in allowed_handlers ({rules_file})"
    assert PolicySet.from_mapping({"kill_switch": True}).denial("agent") == (
        "the global kill switch is on"
    )


def test_violations_list_every_budget_exceeded() -> None:
    rules = PolicySet.from_mapping({"defaults": {"max_cost": 1, "max_steps": 2}})
    assert rules.violations("x", cost=1.0, steps=2, duration_ms=10) == []
    assert rules.violations("x", cost=1.5, steps=3, duration_ms=10) == [
        "cost 1.5 exceeds max_cost 1",
        "3 steps exceed max_steps 2",
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_cots": 1}, "unknown key\\(s\\) max_cots"),
        ({"defaults": {"max_steps": 1.5}}, "defaults.max_steps must be a whole number"),
        ({"defaults": {"max_cost": -1}}, "defaults.max_cost must be a number >= 0"),
        ({"handlers": {"a": {"kill_switch": "yes"}}}, "handlers.a.kill_switch must be true"),
        ({"allowed_handlers": "agent"}, "allowed_handlers must be a list"),
        ({"handlers": ["a"]}, "handlers must be a table"),
    ],
)
def test_a_malformed_rule_is_refused_with_its_key(data: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        PolicySet.from_mapping(data, "rules.toml")


def test_an_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("max_cost = [")
    with pytest.raises(PolicyError, match="cannot read policy file"):
        PolicySet.load(broken)
    with pytest.raises(PolicyError):
        PoliciesDomain(tmp_path / "absent.toml")


def test_the_domain_denies_limits_and_acks_its_evaluation() -> None:
    domain = PoliciesDomain(
        rules=PolicySet.from_mapping(
            {"handlers": {"spender": {"max_cost": 1}, "off": {"kill_switch": True}}}
        )
    )
    spender, off = make_context("spender"), make_context("off")
    assert asyncio.run(domain.authorize(spender)) is None
    veto = asyncio.run(domain.authorize(off))
    assert veto is not None and veto.decision == DENIED_BY_POLICY
    assert domain.limits(spender) == Limits(max_cost=1.0)

    spender.charge(0.5)
    acks = FakeAcks()
    asyncio.run(domain.on_execution_end(spender, Outcome.succeeded(), acks))
    clean = acks.one("policies", "evaluate_policy")
    assert clean.error is None and clean.details is not None
    assert clean.details["verdict"] == "ALLOWED"
    assert clean.details["observed"] == {"cost": 0.5, "steps": 0, "duration_ms": None}
    assert clean.details["worker_id"] == "host/pid-1/abc" and clean.details["attempt"] == 1

    spender.limits = Limits()  # let it overspend, to see the evaluation after the fact
    spender.charge(1.0)
    acks = FakeAcks()
    asyncio.run(domain.on_execution_end(spender, Outcome.succeeded(), acks))
    violated = acks.one("policies", "evaluate_policy")
    assert violated.error == "policy violated: cost 1.5 exceeds max_cost 1"


def test_a_denial_by_someone_else_is_not_a_policy_violation() -> None:
    domain = PoliciesDomain()
    acks = FakeAcks()
    asyncio.run(domain.on_denied(make_context(), Decision("DENIED_BY_REVIEWER", "no"), acks))
    ack = acks.one("policies", "evaluate_policy")
    assert ack.error is None and ack.details is not None
    assert ack.details["verdict"] == "ALLOWED"
    assert ack.details["denial"] == {"decision": "DENIED_BY_REVIEWER", "reason": "no"}


def test_a_policy_violation_without_observable_excess_is_still_reported() -> None:
    """A resumed run: the violation happened in an earlier attempt, only its error is left."""
    acks = FakeAcks()
    outcome = Outcome(OutcomeKind.POLICY_VIOLATION, "policy violation: cost 9 exceeds max_cost 1")
    asyncio.run(PoliciesDomain().on_execution_end(make_context(), outcome, acks))
    assert acks.one("policies", "evaluate_policy").error == (
        "policy violated: policy violation: cost 9 exceeds max_cost 1"
    )


def test_the_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("kill_switch = false\n")
    domain = PoliciesDomain(path)
    assert domain.rules.kill_switch is False
    path.write_text("kill_switch = true\n")
    import os

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert domain.rules.kill_switch is True
