"""The runtime audit contract (RAC): what evidence a run owes, and the reconciler.

A run declares its expectations at T0; domains ack them; `reconcile` compares
the two. Pure functions over plain values, so the same rules judge a run in the
kernel, in the sweeper and in tests.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

ORCHESTRATOR_DOMAIN = "orchestrator"
FINALIZE_RUN = (ORCHESTRATOR_DOMAIN, "finalize_run")

DEFAULT_DOMAIN_EXPECTATIONS: tuple[tuple[str, str], ...] = (
    ("incidents", "create_incident"),
    ("policies", "evaluate_policy"),
    ("logs", "start_trace"),
    ("logs", "complete_trace"),
)

Pair = tuple[str, str]


class ExpectationStatus(enum.StrEnum):
    PENDING = "PENDING"
    """Not acked yet, and its deadline (if the clock started) has not passed."""
    ACKED = "ACKED"
    """A domain acknowledged it (with or without an error)."""
    MISSING = "MISSING"
    """A governance check ended without it, or its deadline passed."""


class ReconciliationStatus(enum.StrEnum):
    COMPLETE = "COMPLETE"
    """Every expectation acked once, in time, without an error; nothing unexpected."""
    PENDING = "PENDING"
    """Nothing wrong yet, but a domain's evidence has not arrived (the run is unchecked)."""
    INCOMPLETE = "INCOMPLETE"
    """Something missing, failed, invalid or unexpected (drift)."""
    STALE = "STALE"
    """finalize_run was not acked by its deadline."""


@dataclass(frozen=True)
class AuditExpectation:
    """One piece of evidence a run owes: `domain` must ack `action` by `deadline`."""

    run_id: str
    domain: str
    action: str
    deadline_ms: int | None
    deadline: datetime | None = None
    status: ExpectationStatus = ExpectationStatus.PENDING

    @property
    def pair(self) -> Pair:
        return (self.domain, self.action)


@dataclass(frozen=True)
class DomainAck:
    """A domain's word that it did (or, with `error`, failed to do) an action."""

    run_id: str
    domain: str
    action: str
    result_id: str | None
    error: str | None
    at: datetime
    late: bool = False
    """Arrived after the governance verdict was recorded or the run ended: kept as
    drift, never counted as evidence (the recorded verdict never changes)."""
    details: dict[str, Any] | None = None
    """What the domain recorded: an incident, a policy evaluation, a trace summary."""
    actor: str | None = None
    """Who sent it: the API key's id (None with auth off, or the service itself)."""

    @property
    def pair(self) -> Pair:
        return (self.domain, self.action)


@dataclass(frozen=True)
class ReconciliationResult:
    status: ReconciliationStatus
    missing: list[Pair] = field(default_factory=list)
    drift: list[Pair] = field(default_factory=list)
    invalid: list[Pair] = field(default_factory=list)
    failed: list[Pair] = field(default_factory=list)
    stale: bool = False
    pending: list[Pair] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "missing": [list(p) for p in self.missing],
            "drift": [list(p) for p in self.drift],
            "invalid": [list(p) for p in self.invalid],
            "failed": [list(p) for p in self.failed],
            "stale": self.stale,
            "pending": [list(p) for p in self.pending],
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ReconciliationResult:
        def pairs(key: str) -> list[Pair]:
            raw = data.get(key) or []
            assert isinstance(raw, list)
            return [(str(p[0]), str(p[1])) for p in raw]

        return cls(
            status=ReconciliationStatus(str(data["status"])),
            missing=pairs("missing"),
            drift=pairs("drift"),
            invalid=pairs("invalid"),
            failed=pairs("failed"),
            stale=bool(data.get("stale", False)),
            pending=pairs("pending"),  # absent from verdicts recorded before it existed
        )


def default_contract(run_timeout_ms: int, grace_period_ms: int) -> list[tuple[str, str, int]]:
    """The four domain expectations and finalize_run, each due at timeout + grace."""
    deadline_ms = run_timeout_ms + grace_period_ms
    return [(d, a, deadline_ms) for d, a in (*DEFAULT_DOMAIN_EXPECTATIONS, FINALIZE_RUN)]


def custom_contract(
    declared: Sequence[tuple[str, str, int | None]],
    run_timeout_ms: int,
    grace_period_ms: int,
) -> list[tuple[str, str, int]]:
    """A run's own expectations instead of the four defaults; finalize_run always added."""
    default_ms = run_timeout_ms + grace_period_ms
    contract: dict[Pair, int] = {}
    for domain, action, deadline_ms in declared:
        contract[(domain, action)] = deadline_ms if deadline_ms is not None else default_ms
    contract.setdefault(FINALIZE_RUN, default_ms)
    return [(d, a, ms) for (d, a), ms in contract.items()]


def expectation_status(
    exp: AuditExpectation,
    acked: set[Pair],
    now: datetime,
    check_ended: bool,
    terminal: bool,
) -> ExpectationStatus:
    """PENDING until acked; MISSING once a check ended without it or its deadline passed.

    finalize_run can only be acked by the kernel at finalization, so a
    governance check never makes it missing; only its deadline (stale) or a
    terminal run without it does.
    """
    if exp.pair in acked:
        return ExpectationStatus.ACKED
    if exp.deadline is not None and now >= exp.deadline:
        return ExpectationStatus.MISSING
    if exp.pair == FINALIZE_RUN:
        return ExpectationStatus.MISSING if terminal else ExpectationStatus.PENDING
    if check_ended or terminal:
        return ExpectationStatus.MISSING
    return ExpectationStatus.PENDING


def reconcile(
    expectations: Iterable[AuditExpectation],
    acks: Iterable[DomainAck],
    now: datetime,
    check_ended: bool = False,
    terminal: bool = False,
) -> ReconciliationResult:
    """Compare what a run owes with what it was given.

    - missing: expected and not acked, once a governance check ended, the run
      is terminal, or the deadline passed (see `expectation_status`); until
      then such an expectation is *pending*.
    - drift: acked but never expected, every second ack of one pair, and every
      late ack (after the governance verdict was recorded or the run ended).
    - stale: finalize_run expected and not acked by its deadline (acked late
      or not at all).
    - invalid: an expectation with no deadline_ms.
    - failed: acks that carry an error.
    - pending: expected, not acked, neither missing nor past its deadline.

    Status: STALE, else INCOMPLETE if any list above is non-empty (pending
    aside), else PENDING while a domain expectation is pending (finalize_run
    awaiting the end of the run does not count), else COMPLETE: a run whose
    evidence has not arrived is never reported COMPLETE.
    """
    expectations = list(expectations)
    acks = list(acks)
    timely = [a for a in acks if not a.late]
    expected = {e.pair: e for e in expectations}
    counts = Counter(a.pair for a in timely)
    acked = set(counts)

    missing: list[Pair] = []
    pending: list[Pair] = []
    for pair, exp in expected.items():
        state = expectation_status(exp, acked, now, check_ended, terminal)
        if state is ExpectationStatus.MISSING:
            missing.append(pair)
        elif state is ExpectationStatus.PENDING:
            pending.append(pair)

    drift = [p for p in counts if p not in expected]
    drift += [p for p, n in counts.items() if p in expected and n > 1]
    drift += [a.pair for a in acks if a.late]
    failed = sorted({a.pair for a in timely if a.error})
    invalid = [e.pair for e in expectations if e.deadline_ms is None]

    stale = _is_stale(expected.get(FINALIZE_RUN), timely, now)

    if stale:
        status = ReconciliationStatus.STALE
    elif missing or drift or invalid or failed:
        status = ReconciliationStatus.INCOMPLETE
    elif any(pair != FINALIZE_RUN for pair in pending):
        status = ReconciliationStatus.PENDING
    else:
        status = ReconciliationStatus.COMPLETE
    return ReconciliationResult(
        status=status,
        missing=sorted(missing),
        drift=sorted(drift),
        invalid=sorted(invalid),
        failed=failed,
        stale=stale,
        pending=sorted(pending),
    )


def _is_stale(
    finalize_exp: AuditExpectation | None, timely: list[DomainAck], now: datetime
) -> bool:
    """finalize_run was not acked *by its deadline* (a later ack does not clear it)."""
    if finalize_exp is None or finalize_exp.deadline is None:
        return False
    acked_at = [a.at for a in timely if a.pair == FINALIZE_RUN]
    if acked_at:
        return min(acked_at) > finalize_exp.deadline
    return now >= finalize_exp.deadline


def governance_outstanding(
    expectations: Iterable[AuditExpectation], acks: Iterable[DomainAck]
) -> list[Pair]:
    """Non-orchestrator expectations not yet acked: what a governance check waits for."""
    acked = {a.pair for a in acks if not a.late}
    return sorted(
        e.pair for e in expectations if e.domain != ORCHESTRATOR_DOMAIN and e.pair not in acked
    )


def expectation_deadline(started_at: datetime | None, deadline_ms: int | None) -> datetime | None:
    if started_at is None or deadline_ms is None:
        return None
    return started_at + timedelta(milliseconds=deadline_ms)
