"""The timeline's geometry and the console's formats, as pure functions of a run's JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.api.console import timeline
from service.api.console.evidence import contract_rows, other_fields, pair_status
from service.api.console.pages import format_duration, format_time

T0 = datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def move(frm: str, to: str, seconds: float, attempt: int = 1, reason: str = "") -> dict[str, Any]:
    return {
        "from": frm,
        "to": to,
        "at": at(seconds),
        "attempt": attempt,
        "kind": "attempt" if frm == to else "transition",
        "reason": reason or f"{frm} to {to}",
    }


def run(phase: str, history: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    last = history[-1]["at"] if history else T0
    return {
        "phase": phase,
        "created_at": T0,
        "updated_at": last,
        "attempt": max([1, *(h["attempt"] for h in history)]),
        "max_attempts": 3,
        "history": history,
        "acks": [],
        "expectations": [],
        "reconciliation": {"status": "PENDING", "stale": False},
        **fields,
    }


RETRIED = [
    move("CREATED", "AUTHORIZED", 1),
    move("AUTHORIZED", "EXECUTING", 2),
    move("EXECUTING", "EXECUTING", 3, attempt=2, reason="lease expired"),
    move("EXECUTING", "GOVERNANCE_CHECK", 4, attempt=2),
]


def test_a_live_run_s_spans_end_now_and_an_attempt_moves_no_phase() -> None:
    spans = timeline.phase_spans(run("GOVERNANCE_CHECK", RETRIED), now=at(10))
    assert [(s.phase, s.start, s.end, s.live) for s in spans] == [
        ("CREATED", at(0), at(1), False),
        ("AUTHORIZED", at(1), at(2), False),
        ("EXECUTING", at(2), at(4), False),
        ("GOVERNANCE_CHECK", at(4), at(10), True),
    ]
    assert timeline.attempt_starts(run("GOVERNANCE_CHECK", RETRIED)) == [
        (1, at(0), None),
        (2, at(3), "lease expired"),
    ]


def test_a_control_event_is_a_mark_on_the_phase_lane_and_moves_nothing() -> None:
    cancel = {
        **move("EXECUTING", "EXECUTING", 3, reason="the operator asked"),
        "kind": "event",
        "details": {"event": "cancel_requested"},
    }
    history = [move("CREATED", "EXECUTING", 1), cancel, move("EXECUTING", "FAILED", 4)]
    drawn = timeline.draw(run("FAILED", history), now=at(4))
    assert [s.phase for s in drawn.spans] == ["CREATED", "EXECUTING"]
    assert [(e.y, e.title) for e in drawn.events] == [
        (drawn.lanes[0].y, "cancel_requested at 2026-12-02 09:00:03.000 UTC: the operator asked")
    ]
    assert drawn.events[0].x == pytest.approx(drawn.plot_left + 0.75 * timeline.PLOT_WIDTH)
    assert timeline.attempt_starts(run("FAILED", history)) == [(1, at(0), None)]


def test_a_finished_run_ends_with_a_mark_not_a_span() -> None:
    history = [move("CREATED", "FAILED", 2)]
    drawn = timeline.draw(run("FAILED", history), now=at(60))
    assert [s.phase for s in drawn.spans] == ["CREATED"]
    assert drawn.end is not None and "phase-FAILED" in drawn.end.css
    assert drawn.end.x == drawn.plot_right, "the axis ends at the run's end, not now"
    assert drawn.phases[0].x == drawn.plot_left


def test_the_axis_has_round_ticks_labelled_from_the_creation() -> None:
    drawn = timeline.draw(run("FAILED", [move("CREATED", "FAILED", 2.5)]), now=at(2.5))
    assert [t.label for t in drawn.ticks] == ["0", "+500 ms", "+1 s", "+1.5 s", "+2 s", "+2.5 s"]
    xs = [t.x for t in drawn.ticks]
    assert xs[0] == drawn.plot_left and xs[-1] == drawn.plot_right
    long = timeline.draw(run("FAILED", [move("CREATED", "FAILED", 7200)]), now=at(7200))
    labels = [t.label for t in long.ticks]
    assert len(labels) - 1 <= timeline.MAX_TICKS
    assert labels[:3] == ["0", "+15 min", "+30 min"] and labels[-2:] == ["+1 h 45 min", "+2 h"]


def test_a_move_a_moment_after_the_last_is_still_visible_and_inside_the_plot() -> None:
    history = [move("CREATED", "AUTHORIZED", 0), move("AUTHORIZED", "FAILED", 0)]
    drawn = timeline.draw(run("FAILED", history), now=at(0))
    for box in drawn.phases:
        assert box.width >= timeline.MIN_SPAN_WIDTH
        assert drawn.plot_left <= box.x and box.x + box.width <= drawn.plot_right
        assert not box.show_label, "no label squeezed into a sliver"


def test_acks_and_deadlines_sit_on_their_domain_s_lane() -> None:
    expectations = [
        {"domain": "incidents", "action": "create_incident", "deadline": at(5)},
        {"domain": "orchestrator", "action": "finalize_run", "deadline": at(600)},
        {"domain": "logs", "action": "start_trace", "deadline": None},
    ]
    acks = [
        {"domain": "incidents", "action": "create_incident", "at": at(2), "error": None},
        {"domain": "billing", "action": "charge", "at": at(3), "error": "declined", "late": True},
    ]
    for ack in acks:
        ack.setdefault("late", False)
    drawn = timeline.draw(
        run("EXECUTING", [move("CREATED", "EXECUTING", 1)], expectations=expectations, acks=acks),
        now=at(10),
    )
    lanes = {lane.label: lane.y for lane in drawn.lanes}
    assert list(lanes) == ["phase", "attempt", "incidents", "orchestrator", "logs", "billing"]
    assert [(m.y - drawn.lane_height / 2, m.css) for m in drawn.acks] == [
        (lanes["incidents"], "ack"),
        (lanes["billing"], "ack ack-error ack-late"),
    ]
    assert [(m.y, m.css) for m in drawn.deadlines] == [
        (lanes["incidents"], "deadline"),
        (lanes["orchestrator"], "deadline beyond"),
    ]
    assert drawn.deadlines[1].x == drawn.plot_right
    assert "past the right edge" in drawn.deadlines[1].title


@pytest.mark.parametrize(
    ("ms", "said"),
    [
        (0, "0 ms"),
        (420, "420 ms"),
        (1500, "1.5 s"),
        (35_000, "35 s"),
        (125_000, "2 min 5 s"),
        (3_600_000, "1 h"),
        (11_400_000, "3 h 10 min"),
        (3 * 86_400_000, "3 d"),
    ],
)
def test_durations_read_as_a_person_says_them(ms: float, said: str) -> None:
    assert format_duration(ms) == said


def test_times_are_utc_to_the_millisecond() -> None:
    local = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC).astimezone()
    assert format_time(local) == "2026-12-02 10:00:00.123 UTC"
    assert format_time(None) == "—"


def test_a_pair_shows_the_worst_the_reconciliation_says_of_it() -> None:
    finalize = ("orchestrator", "finalize_run")
    policy = ("policies", "evaluate_policy")
    stale = {"stale": True, "missing": [list(finalize)], "pending": []}
    assert pair_status(finalize, stale, acked=False) == "STALE"
    assert pair_status(policy, {"failed": [list(policy)], "drift": [list(policy)]}, True) == (
        "FAILED"
    )
    assert pair_status(policy, {"drift": [list(policy)]}, acked=True) == "DRIFT"
    assert pair_status(policy, {}, acked=True) == "OK"
    assert pair_status(policy, {}, acked=False) == "PENDING"


def test_an_unexpected_pair_is_listed_after_the_contract_as_drift() -> None:
    ack = {"domain": "billing", "action": "charge", "at": at(1), "late": False}
    rows = contract_rows(
        run(
            "EXECUTING",
            [],
            expectations=[
                {"domain": "logs", "action": "start_trace", "deadline_ms": 10, "deadline": None}
            ],
            acks=[ack],
            reconciliation={"drift": [["billing", "charge"]], "pending": [["logs", "start_trace"]]},
        )
    )
    assert [(r.domain, r.expected, r.status, len(r.acks)) for r in rows] == [
        ("logs", True, "PENDING", 0),
        ("billing", False, "DRIFT", 1),
    ]


def test_fields_no_section_shows_are_listed_in_the_api_s_order() -> None:
    served = {"id": "r", "phase": "CREATED", "result": {"n": 1}, "input": None, "approval": "ok"}
    assert other_fields(served) == [("result", {"n": 1}), ("input", None), ("approval", "ok")]
