"""bench.json (every sample) and bench.md (the table a person reads)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from service.bench import targets
from service.bench.figures import Figure, Figures


def write(out: Path, figures: Figures, header: dict[str, Any]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    summary = targets.rows(figures, tuple(header["backends"]))
    data = {
        **header,
        "targets": [row.to_json() for row in summary],
        "figures": [f.to_json() for f in figures],
    }
    json_path = out / "bench.json"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md_path = out / "bench.md"
    md_path.write_text(markdown(figures, header))
    return json_path, md_path


def markdown(figures: Figures, header: dict[str, Any]) -> str:
    machine = header["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    lines = [
        "# rok bench",
        "",
        f"Command: `{header['command']}`  ",
        f"Started {header['started_at']}, took {header['duration_s']:.0f} s; "
        f"{header['plan']['repeats']} repeat(s) per figure (median, min, max).  ",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"Python {machine['python']}, SQLite {machine['sqlite']}"
        + (f", PostgreSQL {machine['postgresql']}" if machine.get("postgresql") else "")
        + f"; {packages}; commit {header['commit_at_start']} at the start, "
        f"{machine['commit_at_end']} at the end.  ",
        "The load client runs on the same machine as the server (it shares the cores); "
        f"load average at the start {header['load_average_at_start']}, "
        f"at the end {machine['load_average_at_end']}.",
        "",
        *targets_section(figures, tuple(header["backends"])),
        "## Figures",
        "",
        "| workload | backend | figure | median | min | max | unit | target | met |",
        "|---|---|---|---:|---:|---:|---|---|---|",
    ]
    for figure in figures:
        if figure.table == "main":
            lines.append(_row(figure))
    endpoint_rows = [f for f in figures if f.table == "endpoints"]
    if endpoint_rows:
        lines += [
            "",
            "## Latency per endpoint (median over repeats)",
            "",
            "| workload | backend | endpoint and percentile | median | min | max |",
            "|---|---|---|---:|---:|---:|",
        ]
        for figure in endpoint_rows:
            lines.append(
                f"| {figure.workload} | {figure.backend} | {figure.label} | "
                f"{_num(figure.median)} | {_num(figure.minimum)} | {_num(figure.maximum)} |"
            )
    lines += ["", "## Configuration", "", "```json", json.dumps(
        {"plan": header["plan"], "workloads": header["configuration"],
         "server": header["server"], "schema": header["schema"]},
        indent=2, default=str,
    ), "```", ""]  # fmt: skip
    if header.get("notes"):
        lines += ["## Notes", "", *(f"- {note}" for note in header["notes"]), ""]
    return "\n".join(lines)


def targets_section(figures: Figures, backends: tuple[str, ...]) -> list[str]:
    """Issue 13's targets first: one line each per backend, its value and verdict."""
    lines = [
        "## Targets (issue 13)",
        "",
        "| # | target | workload | backend | value (median) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in targets.rows(figures, backends):
        value = "; ".join(
            _num(f.median)
            if len(row.figures) == 1
            else f"{f.key.removeprefix(f'{f.backend}.')} {_num(f.median)}"
            for f in row.figures
        )
        verdict = "**not met**" if row.verdict == "not met" else row.verdict
        lines.append(
            f"| {row.target.number} | {row.target.text} | {row.target.workload} | "
            f"{row.backend} | {value or 'n/a'} | {verdict} |"
        )
    return [*lines, ""]


def _row(figure: Figure) -> str:
    target = figure.target.text if figure.target else ""
    met = {True: "met", False: "**not met**", None: ""}[figure.met]
    return (
        f"| {figure.workload} | {figure.backend} | {figure.label} | {_num(figure.median)} | "
        f"{_num(figure.minimum)} | {_num(figure.maximum)} | {figure.unit} | {target} | {met} |"
    )


def _num(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
