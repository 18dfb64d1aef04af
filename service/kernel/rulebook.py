"""Named rules the kernel consults before a move: accept, reject (with a reason) or wait.

The phase table (service.model.phases) says which moves exist; the lease says
who may make them. Rules say whether this run may make this move now:

    class BusinessHours:
        name = "business_hours"

        def judge(self, move: Move, run: RunRow, now: datetime) -> Ruling:
            if move.name == "authorize" and not 9 <= now.hour < 17:
                return Ruling.wait(self.name, "runs start between 09:00 and 17:00 UTC")
            return ACCEPT

    Authority(settings, rules=[BusinessHours()])

A rule that does not accept refuses the move before anything is written: the
caller gets 409 with the rule's name and reason (`MoveRefused`), and the run
is exactly as it was. `wait` says the move may be accepted later (approval
pending, a window not open yet); `reject` that it never will be as the run
stands. Rules read the run as the move's transaction locked it, so a verdict
and the move it allows cannot be separated by another writer.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.errors import PhaseTransitionError
from service.model.phases import RunPhase
from service.store.records import RunRow


class Verdict(enum.StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    WAIT = "wait"


@dataclass(frozen=True)
class Ruling:
    verdict: Verdict
    rule: str = ""
    reason: str = ""

    @classmethod
    def reject(cls, rule: str, reason: str) -> Ruling:
        return cls(Verdict.REJECT, rule, reason)

    @classmethod
    def wait(cls, rule: str, reason: str) -> Ruling:
        return cls(Verdict.WAIT, rule, reason)


ACCEPT = Ruling(Verdict.ACCEPT)


@dataclass(frozen=True)
class Move:
    """A move a caller asked for: its name (the endpoint's), where it goes, and its claim."""

    name: str
    target: RunPhase
    success: bool | None = None
    """What execution-complete or finalize reports (None for other moves)."""
    governed: bool = True
    """The service's ROK_ENABLED: whether it governs every run."""


class Rule(Protocol):
    name: str

    def judge(self, move: Move, run: RunRow, now: datetime) -> Ruling: ...


class MoveRefused(PhaseTransitionError):
    """A rule did not accept the move (HTTP 409, with the rule and its verdict)."""

    def __init__(self, run: RunRow, move: Move, ruling: Ruling) -> None:
        waiting = "waiting: " if ruling.verdict is Verdict.WAIT else ""
        super().__init__(
            run.id, run.phase, move.target, f"{waiting}{ruling.reason} (rule {ruling.rule})"
        )
        self.rule = ruling.rule
        self.verdict = ruling.verdict.value
        self.reason = ruling.reason


def consult(rules: Sequence[Rule], move: Move, run: RunRow, now: datetime) -> None:
    """Raise MoveRefused for the first rule that does not accept `move`."""
    for rule in rules:
        ruling = rule.judge(move, run, now)
        if ruling.verdict is not Verdict.ACCEPT:
            raise MoveRefused(run, move, ruling)


# -- the kernel's own rules ---------------------------------------------------------


class AuthorizationRule:
    """Authorization judges a run that has not started: only a CREATED run is authorized."""

    name = "authorization"

    def judge(self, move: Move, run: RunRow, now: datetime) -> Ruling:
        if move.name != "authorize" or run.phase is RunPhase.CREATED:
            return ACCEPT
        if run.is_terminal:
            return Ruling.reject(self.name, f"{run.phase} is terminal")
        return Ruling.reject(self.name, f"the run was authorized already (it is {run.phase})")


class ApprovalRule:
    """A run that needs a human's approval does not start before it has it."""

    name = "approval"
    STARTS = frozenset({"authorize", "begin_execution"})

    def judge(self, move: Move, run: RunRow, now: datetime) -> Ruling:
        state = run.control.approval_state
        if move.name in ("approve", "reject"):
            if state is None:
                return Ruling.reject(self.name, "the run needs no approval")
            if state != "pending":
                return Ruling.reject(self.name, f"its approval is {state} already")
            return ACCEPT
        if move.name in self.STARTS and state == "pending":
            deadline = run.control.approval_deadline
            by = f" (until {deadline.isoformat()})" if deadline is not None else ""
            return Ruling.wait(self.name, f"the run is waiting for approval{by}")
        return ACCEPT


class CancellationRule:
    """Once cancellation is asked for, the run only goes towards its failure."""

    name = "cancellation"
    FORWARD = frozenset({"authorize", "begin_execution"})

    def judge(self, move: Move, run: RunRow, now: datetime) -> Ruling:
        control = run.control
        if not control.cancel_requested:
            return ACCEPT
        if move.name == "cancel":
            return Ruling.reject(self.name, "cancellation was requested already")
        by = f" by {control.cancel_by}" if control.cancel_by else ""
        why = f"cancellation was requested{by}: {control.cancel_reason}"
        if move.name in self.FORWARD or (
            move.name in ("execution_complete", "ungoverned_outcome") and move.success
        ):
            return Ruling.reject(self.name, f"{why}; report the execution as failed")
        return ACCEPT


CHECKED_PHASES = frozenset({RunPhase.GOVERNANCE_CHECK, RunPhase.FINALIZING})


class GovernanceRule:
    """GOVERNANCE_CHECK is mandatory before FINALIZING, and a governing service
    accepts no ungoverned outcome (DESIGN sections 1 and 9)."""

    name = "governance"

    def judge(self, move: Move, run: RunRow, now: datetime) -> Ruling:
        if move.name == "ungoverned_outcome" and move.governed:
            return Ruling.reject(
                self.name,
                "this service runs with ROK_ENABLED=true and governs every run; an ungoverned "
                "outcome is accepted only by a service started with ROK_ENABLED=false. Drive "
                "the run through authorize, begin-execution, execution-complete, "
                "governance-check and finalize",
            )
        # finalize from an earlier phase is refused by the kernel for what it is
        # (use fail), not for the check it would also lack
        needs_check = move.name == "begin_finalization" or (
            move.name == "finalize" and move.success and run.phase in CHECKED_PHASES
        )
        if needs_check and not run.is_terminal and not run.governance_recorded:
            return Ruling.reject(self.name, "no governance check was recorded")
        return ACCEPT


DEFAULT_RULES: tuple[Rule, ...] = (
    AuthorizationRule(),
    ApprovalRule(),
    CancellationRule(),
    GovernanceRule(),
)
"""Consulted before every move, in this order, before any rule a user adds."""
