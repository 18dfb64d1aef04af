"""Runs as an operator reads them in a terminal: a table, a timeline, contract vs acks.

Everything here takes the JSON the API answers (RunSummaryOut, RunOut) and
returns lines of text; nothing calls the service.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

TERMINAL = ("COMPLETED", "FAILED")
ERROR_WIDTH = 60
RESULT_WIDTH = 200


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns as wide as their widest cell, two spaces apart; the last one not padded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def run_table(summaries: Sequence[dict[str, Any]]) -> list[str]:
    rows = [
        [
            s["id"],
            s["phase"],
            s.get("tenant_id") or "-",
            s.get("handler") or "-",
            str(s.get("attempt", "")),
            clock(s["created_at"]),
            s.get("reconciliation_status") or "-",
            shorten(s.get("error")),
        ]
        for s in summaries
    ]
    header = ["ID", "PHASE", "TENANT", "HANDLER", "ATTEMPT", "CREATED", "EVIDENCE", "ERROR"]
    return table(header, rows)


def run_page(run: dict[str, Any], now: datetime) -> list[str]:
    """`rok runs show`: who and where, the timeline, contract vs acks, the verdict."""
    lines = [
        f"run {run['id']}",
        f"  handler  {run.get('handler') or '-'}    tenant {run.get('tenant_id') or '-'}",
        f"  phase    {run['phase']}    attempt {run.get('attempt')}/{run.get('max_attempts')}",
        f"  created  {clock(run['created_at'])}"
        + (f" by {run['created_by']}" if run.get("created_by") else ""),
    ]
    lease = run.get("lease")
    if lease:
        lines.append(f"  lease    {lease['worker_id']} until {clock(lease['expires_at'])}")
    if run.get("cancel_requested"):
        lines.append("  cancel   requested: the worker holding it fails it")
    if run.get("error"):
        lines.append(f"  error    {run['error']}")
    if run.get("result") is not None:
        lines.append(f"  result   {shorten(json.dumps(run['result']), RESULT_WIDTH)}")
    for incident in run.get("incidents") or []:
        lines.append(f"  incident {shorten(json.dumps(incident), RESULT_WIDTH)}")
    lines += ["", "timeline", *_indent(timeline(run, now))]
    lines += ["", "contract vs acks", *_indent(contract_and_acks(run))]
    lines += ["", *verdict(run)]
    return lines


def timeline(run: dict[str, Any], now: datetime) -> list[str]:
    """One line per phase entered: when, since creation, how long it lasted, why.

    The last phase of a live run lasts until `now` (marked `…`); a terminal
    phase has no duration.
    """
    created = instant(run["created_at"])
    entries = [(created, "CREATED", 1, "created", False)]
    for h in run.get("history", []):
        again = h.get("kind") == "attempt"
        entries.append((instant(h["at"]), h["to"], h.get("attempt", 1), h.get("reason"), again))
    rows = []
    for index, (at, phase, attempt, reason, again) in enumerate(entries):
        if index + 1 < len(entries):
            lasted = duration(entries[index + 1][0] - at)
        elif phase in TERMINAL:
            lasted = "-"
        else:
            lasted = duration(now - at) + " …"
        rows.append(
            [
                clock(at),
                "+" + duration(at - created),
                phase + (" (again)" if again else ""),
                lasted,
                str(attempt),
                shorten(reason),
            ]
        )
    return table(["AT", "ELAPSED", "PHASE", "FOR", "ATTEMPT", "REASON"], rows)


def contract_and_acks(run: dict[str, Any]) -> list[str]:
    """Each declared (domain, action) with its deadline, status and the acks that answer it."""
    acks_by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for ack in run.get("acks", []):
        acks_by_pair.setdefault((ack["domain"], ack["action"]), []).append(ack)
    rows = []
    for e in run.get("expectations", []):
        pair = (e["domain"], e["action"])
        given = acks_by_pair.pop(pair, [])
        deadline = clock(e["deadline"]) if e.get("deadline") else "-"
        rows.append([f"{pair[0]}/{pair[1]}", deadline, e["status"], *_ack_cells(given)])
    for (domain, action), given in acks_by_pair.items():
        rows.append([f"{domain}/{action}", "-", "UNDECLARED", *_ack_cells(given)])
    if not rows:
        return ["(no contract declared, no acks)"]
    return table(["DOMAIN/ACTION", "DEADLINE", "STATUS", "ACKED AT", "RESULT"], rows)


def _ack_cells(given: list[dict[str, Any]]) -> list[str]:
    if not given:
        return ["-", "-"]
    ack = given[0]
    at = clock(ack["at"]) + (" late" if ack.get("late") else "")
    if len(given) > 1:
        at += f" (+{len(given) - 1} more)"
    result = f"error: {ack['error']}" if ack.get("error") else ack.get("result_id") or "ok"
    return [at, shorten(result)]


def verdict(run: dict[str, Any]) -> list[str]:
    """The recorded governance verdict, then the reconciliation as of now."""
    governance = run.get("governance")
    if governance:
        word = "PASSED" if governance.get("passed") else "FAILED"
        lines = [
            f"governance  {word} at {clock(governance['checked_at'])}: "
            + reconciliation_text(governance.get("reconciliation") or {})
        ]
    else:
        lines = ["governance  not checked"]
    lines.append("evidence    " + reconciliation_text(run.get("reconciliation") or {}))
    return lines


def reconciliation_text(result: dict[str, Any]) -> str:
    parts = [str(result.get("status", "?"))]
    for key in ("missing", "failed", "invalid", "drift", "pending"):
        pairs = result.get(key) or []
        if pairs:
            parts.append(f"{key} " + ", ".join(f"{d}/{a}" for d, a in pairs))
    if result.get("stale"):
        parts.append("stale")
    return "; ".join(parts)


def instant(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def clock(value: str | datetime) -> str:
    """UTC to the millisecond: `2026-12-02 09:00:00.123Z`."""
    at = instant(value) if isinstance(value, str) else value
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def duration(span: Any) -> str:
    """A timedelta as a person reads it: 840ms, 12.3s, 4m05s, 2h03m, 3d04h."""
    ms = max(0, round(span.total_seconds() * 1000))
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, second = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{second:02d}s"
    hours, minute = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minute:02d}m"
    days, hour = divmod(hours, 24)
    return f"{days}d{hour:02d}h"


def shorten(text: str | None, width: int = ERROR_WIDTH) -> str:
    if not text:
        return "-"
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _indent(lines: list[str]) -> list[str]:
    return ["  " + line for line in lines]
