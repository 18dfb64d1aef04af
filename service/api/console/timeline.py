"""A run's timeline as geometry for an SVG: phases, attempts and acks on one time axis.

Pure functions of the run as the API presents it (presenters.run_json) and the
time now; the template (templates/_timeline.svg.html) only draws what this
module placed. The axis starts at the run's creation and ends at its last
event, or now while the run is live, so the current phase grows at the right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.api.console.pages import format_duration, format_time
from service.model.phases import TERMINAL_PHASES, RunPhase

WIDTH = 960
LEFT = 150  # room for the lane labels
RIGHT = 24
TOP = 12
LANE_HEIGHT = 26
LANE_GAP = 8
AXIS_HEIGHT = 46
MIN_SPAN_WIDTH = 2.0  # a move a millisecond after the last still shows
CHAR_WIDTH = 7.0  # of the label font, to tell whether a label fits in its rect
PLOT_WIDTH = WIDTH - LEFT - RIGHT

# tick steps, in milliseconds: the first that makes at most MAX_TICKS intervals
TICK_STEPS_MS = tuple(
    n * unit
    for unit, factors in (
        (1, (1, 2, 5, 10, 20, 50, 100, 200, 500)),
        (1000, (1, 2, 5, 10, 15, 30)),
        (60_000, (1, 2, 5, 10, 15, 30)),
        (3_600_000, (1, 2, 3, 6, 12)),
        (86_400_000, (1, 2, 7, 14, 30, 90, 365)),
    )
    for n in factors
)
MAX_TICKS = 8


@dataclass(frozen=True)
class PhaseSpan:
    """The run in `phase` from `start` to `end` (to now, while `live`)."""

    phase: str
    start: datetime
    end: datetime
    live: bool
    attempt: int

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start).total_seconds() * 1000


@dataclass(frozen=True)
class Box:
    """A rect: a phase span or an attempt, placed on the axis."""

    x: float
    width: float
    label: str
    title: str
    css: str
    show_label: bool


@dataclass(frozen=True)
class Mark:
    """A point on a lane: an ack, a deadline, the run's end."""

    x: float
    y: float
    css: str
    title: str


@dataclass(frozen=True)
class Boundary:
    """Where an attempt ended and the next began (a line across every lane)."""

    x: float
    label: str
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Lane:
    label: str
    y: float


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    plot_left: int
    plot_right: int
    axis_y: float
    lane_height: int
    lanes: Sequence[Lane]
    phases: Sequence[Box]
    attempts: Sequence[Box]
    boundaries: Sequence[Boundary]
    acks: Sequence[Mark]
    events: Sequence[Mark]
    deadlines: Sequence[Mark]
    end: Mark | None
    ticks: Sequence[Tick]
    caption: str
    spans: Sequence[PhaseSpan]


def phase_spans(run: Mapping[str, Any], now: datetime) -> list[PhaseSpan]:
    """Each stay of the run in a phase, in order; the terminal phase is no span (it is the end).

    The run is CREATED from its creation; every transition of its history ends
    one span and begins the next. Attempt and event entries (from == to) move nothing.
    """
    spans: list[PhaseSpan] = []
    phase, start, attempt = RunPhase.CREATED.value, run["created_at"], 1
    for entry in run["history"]:
        if entry["kind"] != "transition":
            continue
        spans.append(PhaseSpan(phase, start, entry["at"], False, attempt))
        phase, start, attempt = str(entry["to"]), entry["at"], entry["attempt"]
    if RunPhase(phase) not in TERMINAL_PHASES:
        spans.append(PhaseSpan(phase, start, max(now, start), True, run["attempt"]))
    return spans


def attempt_starts(run: Mapping[str, Any]) -> list[tuple[int, datetime, str | None]]:
    """(attempt, when it began, why the previous one ended) for every attempt of the run."""
    starts: list[tuple[int, datetime, str | None]] = [(1, run["created_at"], None)]
    for entry in run["history"]:
        if entry["kind"] == "attempt":
            starts.append((entry["attempt"], entry["at"], entry["reason"]))
    return starts


def _end_of(run: Mapping[str, Any], now: datetime) -> datetime:
    """The right end of the axis: now while the run is live, else its last event."""
    times: list[datetime] = [run["created_at"], run["updated_at"]]
    times += [h["at"] for h in run["history"]]
    times += [a["at"] for a in run["acks"]]
    if RunPhase(run["phase"]) not in TERMINAL_PHASES:
        times.append(now)
    return max(times)


class _Axis:
    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.length_ms = max((end - start).total_seconds() * 1000, 1.0)

    def x(self, at: datetime) -> float:
        offset = (at - self.start).total_seconds() * 1000
        return round(LEFT + PLOT_WIDTH * min(max(offset / self.length_ms, 0.0), 1.0), 2)

    def ticks(self) -> list[Tick]:
        step = next(
            (s for s in TICK_STEPS_MS if self.length_ms / s <= MAX_TICKS), TICK_STEPS_MS[-1]
        )
        count = int(self.length_ms // step)
        return [
            Tick(round(LEFT + PLOT_WIDTH * (i * step) / self.length_ms, 2), _offset(i * step))
            for i in range(count + 1)
        ]


def _offset(ms: float) -> str:
    return "0" if ms == 0 else "+" + format_duration(ms)


def _box(axis: _Axis, start: datetime, end: datetime, label: str, title: str, css: str) -> Box:
    x = axis.x(start)
    width = max(axis.x(end) - x, MIN_SPAN_WIDTH)
    x = min(x, LEFT + PLOT_WIDTH - width)
    return Box(x, round(width, 2), label, title, css, len(label) * CHAR_WIDTH + 8 <= width)


def _domains(run: Mapping[str, Any]) -> list[str]:
    """The ack lanes: the contract's domains in its order, then any domain only an ack names."""
    seen: dict[str, None] = {}
    for item in (*run["expectations"], *run["acks"]):
        seen.setdefault(str(item["domain"]), None)
    return list(seen)


def draw(run: Mapping[str, Any], now: datetime) -> Timeline:
    """Place the run's phases, attempts, acks and deadlines on one time axis."""
    start, end = run["created_at"], _end_of(run, now)
    axis = _Axis(start, end)
    domains = _domains(run)
    lanes = [
        Lane(label, TOP + i * (LANE_HEIGHT + LANE_GAP))
        for i, label in enumerate(["phase", "attempt", *domains])
    ]
    lane_y = {lane.label: lane.y for lane in lanes}
    axis_y = TOP + len(lanes) * (LANE_HEIGHT + LANE_GAP)

    spans = phase_spans(run, now)
    phases = [
        _box(
            axis,
            s.start,
            s.end,
            s.phase,
            f"{s.phase}{' (now)' if s.live else ''}: {format_time(s.start)} → "
            f"{'now' if s.live else format_time(s.end)} ({format_duration(s.duration_ms)})",
            f"phase-span phase-{s.phase}{' live' if s.live else ''}",
        )
        for s in spans
    ]
    starts = attempt_starts(run)
    attempts = []
    for i, (number, began, _) in enumerate(starts):
        until = starts[i + 1][1] if i + 1 < len(starts) else end
        label = f"attempt {number}"
        title = f"{label} of {run['max_attempts']}: from {format_time(began)}"
        attempts.append(_box(axis, began, until, label, title, "attempt-span"))
    boundaries = [
        Boundary(axis.x(began), f"attempt {number}", f"attempt {number} began: {why}")
        for number, began, why in starts[1:]
    ]
    middle = LANE_HEIGHT / 2
    acks = [
        Mark(
            axis.x(a["at"]),
            lane_y[str(a["domain"])] + middle,
            "ack" + (" ack-error" if a["error"] else "") + (" ack-late" if a["late"] else ""),
            f"{a['domain']}.{a['action']} acked {format_time(a['at'])}"
            + (f" with error: {a['error']}" if a["error"] else "")
            + (" (late: after the verdict or the end)" if a["late"] else ""),
        )
        for a in run["acks"]
    ]
    # control events (a cancellation asked, an approval given) move no phase: marks above it
    events = [
        Mark(
            axis.x(h["at"]),
            lane_y["phase"],
            "event",
            f"{(h.get('details') or {}).get('event', 'event')} at {format_time(h['at'])}"
            + (f": {h['reason']}" if h.get("reason") else ""),
        )
        for h in run["history"]
        if h["kind"] == "event"
    ]
    deadlines = list(_deadlines(run["expectations"], axis, end, lane_y))
    end_mark = None
    if RunPhase(run["phase"]) in TERMINAL_PHASES:
        finished = spans[-1].end if spans else start
        end_mark = Mark(
            axis.x(finished),
            lane_y["phase"] + middle,
            f"end phase-{run['phase']}",
            f"{run['phase']} at {format_time(finished)}",
        )
    return Timeline(
        width=WIDTH,
        height=int(axis_y + AXIS_HEIGHT),
        plot_left=LEFT,
        plot_right=LEFT + PLOT_WIDTH,
        axis_y=axis_y,
        lane_height=LANE_HEIGHT,
        lanes=lanes,
        phases=phases,
        attempts=attempts,
        boundaries=boundaries,
        acks=acks,
        events=events,
        deadlines=deadlines,
        end=end_mark,
        ticks=axis.ticks(),
        caption=f"time since the run was created ({format_time(start)})",
        spans=spans,
    )


def _deadlines(
    expectations: Iterable[Mapping[str, Any]],
    axis: _Axis,
    end: datetime,
    lane_y: Mapping[str, float],
) -> Iterable[Mark]:
    """Each expectation's deadline on its domain's lane; one past the axis sits at its edge."""
    for e in expectations:
        deadline = e["deadline"]
        if deadline is None:
            continue
        beyond = deadline > end
        later = format_duration((deadline - end).total_seconds() * 1000)
        yield Mark(
            axis.x(deadline),
            lane_y[str(e["domain"])],
            "deadline beyond" if beyond else "deadline",
            f"{e['domain']}.{e['action']} due {format_time(deadline)}"
            + (f" ({later} past the right edge)" if beyond else ""),
        )
