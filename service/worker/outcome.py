"""How an execution ended, and the exceptions that stop a handler from outside.

`ctx.check()` raises one of the `RunCancelled` family; a handler that wants
to tidy up catches `RunCancelled` (and re-raises). The error strings start
with a fixed prefix ("timeout:", "policy violation:", ...) so a run resumed
by another worker in GOVERNANCE_CHECK, which only sees the stored error,
can still tell the incidents domain what kind of failure it was.
"""

from __future__ import annotations

import enum
import json
import traceback
from dataclasses import dataclass
from typing import Any

MAX_ERROR_CHARS = 4000
TRACEBACK_FRAMES = 5


class OutcomeKind(enum.StrEnum):
    SUCCEEDED = "succeeded"
    """The handler returned."""
    HANDLER_ERROR = "handler_error"
    """The handler raised."""
    TIMEOUT = "timeout"
    """The handler ran past the run timeout and was abandoned."""
    POLICY_VIOLATION = "policy_violation"
    """A policy budget (cost, steps, duration) was exceeded mid-run."""
    DENIED = "denied"
    """The authorizer refused the run; it never executed."""
    CANCELLED = "cancelled"
    """The run was failed from outside (an operator, the sweeper) while it ran."""
    CANCEL_REQUESTED = "cancel_requested"
    """An operator cancelled the run while it ran: the worker fails it, governed."""
    LEASE_LOST = "lease_lost"
    """This worker's lease was fenced: someone else owns the run now."""
    SHUTDOWN = "shutdown"
    """The worker was shutting down and the drain timeout passed."""

    @classmethod
    def from_error(cls, error: str | None) -> OutcomeKind:
        """Recover the kind from an error string this package wrote."""
        for kind, prefix in _PREFIXES.items():
            if error and error.startswith(prefix):
                return kind
        return cls.HANDLER_ERROR


class RunCancelled(Exception):
    """The run must stop: raised by ctx.check() (and ctx.step/charge) once it was stopped."""

    kind = OutcomeKind.CANCELLED
    prefix = "cancelled: "

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why

    @property
    def error(self) -> str:
        """The run's error: the kind's prefix, then why."""
        return self.prefix + self.why


class CancelRequested(RunCancelled):
    """POST /runs/{id}/cancel reached the handler (through a heartbeat's answer).

    Unlike a run failed from outside, the run is still ours: the pool reports
    the failure through execution-complete, so its incident and governance
    check still happen.
    """

    kind = OutcomeKind.CANCEL_REQUESTED
    prefix = "cancelled: "


class RunTimedOut(RunCancelled):
    kind = OutcomeKind.TIMEOUT
    prefix = "timeout: "


class PolicyViolation(RunCancelled):
    kind = OutcomeKind.POLICY_VIOLATION
    prefix = "policy violation: "


class LeaseRevoked(RunCancelled):
    kind = OutcomeKind.LEASE_LOST
    prefix = "lease lost: "


class WorkerShuttingDown(RunCancelled):
    kind = OutcomeKind.SHUTDOWN
    prefix = "worker shutting down: "


_PREFIXES = {
    OutcomeKind.TIMEOUT: RunTimedOut.prefix,
    OutcomeKind.POLICY_VIOLATION: PolicyViolation.prefix,
    OutcomeKind.SHUTDOWN: WorkerShuttingDown.prefix,
    OutcomeKind.CANCELLED: RunCancelled.prefix,
    OutcomeKind.LEASE_LOST: LeaseRevoked.prefix,
}


@dataclass(frozen=True)
class Outcome:
    """What execution came to; `error` is what the run records."""

    kind: OutcomeKind
    error: str | None = None
    result: Any = None

    @property
    def success(self) -> bool:
        return self.kind is OutcomeKind.SUCCEEDED

    @property
    def reportable(self) -> bool:
        """Still ours to report through execution-complete (not lost, not failed elsewhere)."""
        return self.kind not in (OutcomeKind.CANCELLED, OutcomeKind.LEASE_LOST)

    @classmethod
    def succeeded(cls, result: Any = None) -> Outcome:
        return cls(OutcomeKind.SUCCEEDED, None, result)

    @classmethod
    def stopped(cls, reason: RunCancelled) -> Outcome:
        return cls(reason.kind, reason.error)

    @classmethod
    def raised(cls, exc: BaseException) -> Outcome:
        return cls(OutcomeKind.HANDLER_ERROR, describe_exception(exc))

    @classmethod
    def recorded(cls, run: dict[str, Any]) -> Outcome:
        """The outcome an earlier attempt reported, read back from the run.

        The run's `error` is not enough: releasing a run for another attempt
        overwrites it with "worker lost ...". The execution error survives in
        the reason of the history entry that entered GOVERNANCE_CHECK.
        """
        if run.get("execution_success"):
            return cls.succeeded()
        error = run.get("error")
        for entry in reversed(run.get("history") or []):
            reason = entry.get("reason") or ""
            if entry.get("to") == "GOVERNANCE_CHECK" and reason.startswith(_EXECUTION_FAILED):
                error = reason[len(_EXECUTION_FAILED) :]
                break
        return cls(OutcomeKind.from_error(error), error)


def keepable(outcome: Outcome) -> Outcome:
    """The outcome, or a handler error when its result cannot be sent as JSON.

    The service keeps what a handler returns as the run's `result`; a value
    JSON cannot carry (a set, an object, NaN) fails the execution with a
    reason naming the type, rather than being dropped or stringified.
    """
    if outcome.result is None:
        return outcome
    try:
        json.dumps(outcome.result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        why = f"the handler's result is not JSON ({type(outcome.result).__name__}): {exc}"
        return Outcome(OutcomeKind.HANDLER_ERROR, why)
    return outcome


# The kernel's reason for entering GOVERNANCE_CHECK after a failed execution.
_EXECUTION_FAILED = "execution failed: "


def describe_exception(exc: BaseException) -> str:
    """`Type: message` and the innermost frames: enough to find the line, short to store."""
    frames = traceback.extract_tb(exc.__traceback__)[-TRACEBACK_FRAMES:]
    lines = [f"{type(exc).__name__}: {exc}"]
    if frames:
        lines.append("traceback (innermost last):")
        lines += [f"  {f.filename}:{f.lineno} in {f.name}: {f.line or ''}".rstrip() for f in frames]
    text = "\n".join(lines)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
