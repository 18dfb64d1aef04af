"""The policies domain: declarative per-handler rules, evaluated before, during and after.

A rules file (TOML, or YAML by extension):

    kill_switch = false                     # true: deny every run
    allowed_handlers = ["agent", "report"]  # absent: every handler is allowed

    [defaults]                              # for every handler
    max_cost = 5.0
    max_steps = 50
    max_duration_ms = 60000

    [handlers.report]                       # overrides the defaults for one handler
    max_cost = 1.0
    kill_switch = true                      # deny this handler only

- before: `authorize` denies (DENIED_BY_POLICY, with the rule) a run the
  kill switch or the allowed list forbids;
- during: `limits` hands the budgets to the handler's context, which stops
  the run at the cost or step that crosses one (and the pool at the duration);
- after: the evaluation is acked as policies/evaluate_policy with the rules
  and what was observed in `details`; a violation acks with `error`.

The file is re-read when it changes, so a kill switch takes effect without
restarting the workers.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from service.domains.evidence import new_id, provenance
from service.worker import (
    APPROVAL_REQUIRED,
    AckChannel,
    Decision,
    Domain,
    Limits,
    Outcome,
    OutcomeKind,
    RunContext,
)

log = logging.getLogger("rok.domains.policies")

DOMAIN = "policies"
ACTION = "evaluate_policy"
DENIED_BY_POLICY = "DENIED_BY_POLICY"

_RULE_KEYS = {"max_cost", "max_steps", "max_duration_ms", "kill_switch", "require_approval"}
_TOP_KEYS = {"kill_switch", "allowed_handlers", "defaults", "handlers"}


class PolicyError(ValueError):
    """A rules file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class HandlerRules:
    max_cost: float | None = None
    max_steps: int | None = None
    max_duration_ms: int | None = None
    kill_switch: bool = False
    require_approval: bool = False
    """A person approves each run of the handler before it starts (POST /runs/{id}/approve)."""

    def limits(self) -> Limits:
        return Limits(self.max_cost, self.max_steps, self.max_duration_ms)


@dataclass(frozen=True)
class PolicySet:
    defaults: HandlerRules = HandlerRules()
    handlers: Mapping[str, HandlerRules] = field(default_factory=dict)
    allowed_handlers: frozenset[str] | None = None
    kill_switch: bool = False
    source: str | None = None

    def rules_for(self, handler: str) -> HandlerRules:
        return self.handlers.get(handler, self.defaults)

    def denial(self, handler: str) -> str | None:
        """Why the rules forbid running `handler` at all, or None."""
        where = f" ({self.source})" if self.source else ""
        if self.kill_switch:
            return f"the global kill switch is on{where}"
        if self.rules_for(handler).kill_switch:
            return f"the kill switch of handler '{handler}' is on{where}"
        if self.allowed_handlers is not None and handler not in self.allowed_handlers:
            return f"handler '{handler}' is not in allowed_handlers{where}"
        return None

    def violations(
        self, handler: str, cost: float, steps: int, duration_ms: float | None
    ) -> list[str]:
        """Every budget the observed run exceeded."""
        rules = self.rules_for(handler)
        found = []
        if rules.max_cost is not None and cost > rules.max_cost:
            found.append(f"cost {cost:g} exceeds max_cost {rules.max_cost:g}")
        if rules.max_steps is not None and steps > rules.max_steps:
            found.append(f"{steps} steps exceed max_steps {rules.max_steps}")
        limit = rules.max_duration_ms
        if limit is not None and duration_ms is not None and duration_ms > limit:
            found.append(f"duration {duration_ms:.0f} ms exceeds max_duration_ms {limit}")
        return found

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PolicySet:
        source = str(path)
        try:
            text = Path(path).read_text()
            if source.endswith((".yaml", ".yml")):
                data = yaml.safe_load(text) or {}
            else:
                data = tomllib.loads(text)
        except (OSError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
            raise PolicyError(f"cannot read policy file {source}: {exc}") from exc
        return cls.from_mapping(data, source)

    @classmethod
    def from_mapping(cls, data: Any, source: str | None = None) -> PolicySet:
        where = source or "policy rules"
        if not isinstance(data, Mapping):
            raise PolicyError(f"{where}: expected a table of rules")
        _no_unknown(data, _TOP_KEYS, where)
        defaults = _rules(data.get("defaults", {}), HandlerRules(), f"{where}: defaults")
        handlers_data = data.get("handlers", {})
        if not isinstance(handlers_data, Mapping):
            raise PolicyError(f"{where}: handlers must be a table of handler names")
        handlers = {
            str(name): _rules(rules, defaults, f"{where}: handlers.{name}")
            for name, rules in handlers_data.items()
        }
        allowed = data.get("allowed_handlers")
        if allowed is not None and (
            not isinstance(allowed, list) or not all(isinstance(h, str) for h in allowed)
        ):
            raise PolicyError(f"{where}: allowed_handlers must be a list of handler names")
        return cls(
            defaults=defaults,
            handlers=handlers,
            allowed_handlers=frozenset(allowed) if allowed is not None else None,
            kill_switch=_bool(data.get("kill_switch", False), f"{where}: kill_switch"),
            source=source,
        )


class PoliciesDomain(Domain):
    name = DOMAIN
    owes = MappingProxyType(
        {
            "on_denied": ((DOMAIN, ACTION),),
            "on_execution_end": ((DOMAIN, ACTION),),
        }
    )

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        rules: PolicySet | None = None,
    ) -> None:
        """Rules from `path` (re-read when it changes), or the given `rules`, or none."""
        self._path = Path(path) if path is not None else None
        self._mtime: float | None = None
        self._rules = rules or PolicySet()
        if self._path is not None:
            self._reload()

    @property
    def rules(self) -> PolicySet:
        if self._path is not None:
            self._reload()
        return self._rules

    async def authorize(self, ctx: RunContext) -> Decision | None:
        rules = self.rules
        why = rules.denial(ctx.handler)
        if why:
            return Decision(DENIED_BY_POLICY, why)
        approval = ctx.run.get("approval") or {}
        if rules.rules_for(ctx.handler).require_approval and approval.get("state") != "approved":
            where = f" ({rules.source})" if rules.source else ""
            # the run waits for a person, off the queue; once approved, this grants it
            return Decision(
                APPROVAL_REQUIRED, f"handler '{ctx.handler}' requires approval by policy{where}"
            )
        return None

    def limits(self, ctx: RunContext) -> Limits | None:
        return self.rules.rules_for(ctx.handler).limits()

    async def on_denied(self, ctx: RunContext, decision: Decision, acks: AckChannel) -> None:
        rules = self.rules
        by_policy = decision.decision == DENIED_BY_POLICY
        details = self._details(rules, ctx, "DENIED" if by_policy else "ALLOWED", [])
        details["denial"] = {"decision": decision.decision, "reason": decision.reason}
        error = f"denied by policy: {decision.reason}" if by_policy else None
        await acks.send(DOMAIN, ACTION, result_id=new_id("eval"), error=error, details=details)

    async def on_execution_end(self, ctx: RunContext, outcome: Outcome, acks: AckChannel) -> None:
        rules = self.rules
        found = rules.violations(ctx.handler, ctx.cost, len(ctx.steps), ctx.duration_ms)
        if outcome.kind is OutcomeKind.POLICY_VIOLATION and not found:
            found.append(outcome.error or "policy violation")  # e.g. a resumed run's record
        details = self._details(rules, ctx, "VIOLATED" if found else "ALLOWED", found)
        error = "policy violated: " + "; ".join(found) if found else None
        await acks.send(DOMAIN, ACTION, result_id=new_id("eval"), error=error, details=details)

    def _details(
        self, rules: PolicySet, ctx: RunContext, verdict: str, violations: list[str]
    ) -> dict[str, Any]:
        duration = ctx.duration_ms
        return {
            "verdict": verdict,
            "handler": ctx.handler,
            **provenance(ctx),
            "rules": asdict(rules.rules_for(ctx.handler)),
            "source": rules.source,
            "observed": {
                "cost": ctx.cost,
                "steps": len(ctx.steps),
                "duration_ms": round(duration) if duration is not None else None,
            },
            "violations": violations,
        }

    def _reload(self) -> None:
        assert self._path is not None
        try:
            mtime = self._path.stat().st_mtime
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {self._path}: {exc}") from exc
        if mtime != self._mtime:
            self._rules = PolicySet.load(self._path)
            self._mtime = mtime
            log.info("policies loaded from %s", self._path)


def _rules(data: Any, base: HandlerRules, where: str) -> HandlerRules:
    if not isinstance(data, Mapping):
        raise PolicyError(f"{where}: expected a table of rules")
    _no_unknown(data, _RULE_KEYS, where)
    rules = base
    if "max_cost" in data:
        rules = replace(rules, max_cost=_number(data["max_cost"], f"{where}.max_cost"))
    if "max_steps" in data:
        rules = replace(rules, max_steps=_whole(data["max_steps"], f"{where}.max_steps"))
    if "max_duration_ms" in data:
        value = _whole(data["max_duration_ms"], f"{where}.max_duration_ms")
        rules = replace(rules, max_duration_ms=value)
    if "kill_switch" in data:
        rules = replace(rules, kill_switch=_bool(data["kill_switch"], f"{where}.kill_switch"))
    if "require_approval" in data:
        value = _bool(data["require_approval"], f"{where}.require_approval")
        rules = replace(rules, require_approval=value)
    return rules


def _no_unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {sorted(known)}")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PolicyError(f"{where} must be a number >= 0, not {value!r}")
    return float(value)


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{where} must be a whole number >= 0, not {value!r}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"{where} must be true or false, not {value!r}")
    return value
