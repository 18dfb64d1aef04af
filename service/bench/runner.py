"""`rok bench`: run the workloads against real server processes and write the report.

    rok bench [--quick] [--backend sqlite|postgres|all] [--out DIR] [--repeat N] [--peers]
    python -m service.bench ...   (the same)

`bench` is the click command the `rok` group holds; `main(argv)` runs it
standalone. Every server process is stopped when the bench ends, fails or is
interrupted (Ctrl-C or SIGTERM); an interrupted bench still writes what it
measured so far.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

from service.bench import (
    fairness,
    memory,
    peers,
    report,
    scale,
    scaleout,
    throughput,
    waiting,
    workers,
)
from service.bench.context import Context
from service.bench.databases import DEFAULT_POSTGRES_URL, postgres_version, schema_method
from service.bench.figures import Figures
from service.bench.launch import UVICORN_SETTINGS
from service.bench.machine import current_commit, describe
from service.bench.peers import DEFAULT_REDIS_URL
from service.bench.plan import plan_for
from service.bench.server import AUTH_MODES, use_auth

WORKLOADS: dict[str, Callable[[Context], None]] = {
    "W1": throughput.run,
    "W2": workers.run,
    "W3": scale.run,
    "W4": waiting.run,
    "W5": memory.run,
    "W6": fairness.run,
    "W7": scaleout.run,
}
BACKENDS = {"sqlite": ("sqlite",), "postgres": ("postgres",), "all": ("sqlite", "postgres")}


@click.command(help="Measure lifecycles/s, latency and scale against the platform limits.")
@click.option("--quick", is_flag=True, help="The CI smoke plan: about a minute, SQLite.")
@click.option(
    "--backend",
    type=click.Choice(sorted(BACKENDS)),
    default="sqlite",
    show_default=True,
    help="The databases to measure.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Report folder.",
)
@click.option(
    "--repeat", type=click.IntRange(min=1), default=None, help="Repeats per figure (3; quick 1)."
)
@click.option(
    "--workloads",
    default=None,
    help="Comma-separated subset of W1,W2,W3,W4,W5,W6,W7 (default: all).",
)
@click.option(
    "--auth",
    type=click.Choice(AUTH_MODES),
    default="required",
    show_default=True,
    help="ROK_AUTH of the services measured (required: every request sends a key).",
)
@click.option(
    "--postgres-url",
    envvar="ROK_BENCH_POSTGRES_URL",
    default=DEFAULT_POSTGRES_URL,
    show_default=True,
    help="Server to create scratch databases on (env ROK_BENCH_POSTGRES_URL).",
)
@click.option(
    "--peers",
    is_flag=True,
    help="Also run a Celery-on-Redis no-op task loop beside W2, at W2's concurrency, "
    "and report rok's governed runs/s ÷ Celery's (needs pip install 'rok[bench]').",
)
@click.option(
    "--redis-url",
    envvar="ROK_BENCH_REDIS_URL",
    default=DEFAULT_REDIS_URL,
    show_default=True,
    help="The Redis of --peers (env ROK_BENCH_REDIS_URL); its keys are prefixed and deleted.",
)
def bench(**options: Any) -> int:
    return run_bench(BenchOptions(**options))


@dataclass(frozen=True)
class BenchOptions:
    """What a `rok bench` command line asks for."""

    quick: bool = False
    backend: str = "sqlite"
    out: Path = Path("bench-results")
    repeat: int | None = None
    workloads: str | None = None
    auth: str = "required"
    postgres_url: str = DEFAULT_POSTGRES_URL
    peers: bool = False
    redis_url: str = DEFAULT_REDIS_URL


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m service.bench`: the `bench` command alone."""
    try:
        code = bench.main(args=argv, prog_name="rok bench", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return code if isinstance(code, int) else 0


def run_bench(args: BenchOptions) -> int:
    workloads = _workloads(args.workloads)
    plan = plan_for(args.quick, args.repeat, workloads)
    use_auth(args.auth)
    if args.peers:
        try:
            peers.check_available(args.redis_url)
        except peers.PeerUnavailable as exc:
            raise click.UsageError(str(exc)) from exc
    backends = BACKENDS[args.backend]
    previous = _terminate_as_interrupt()
    figures = Figures()
    configuration: dict[str, Any] = {}
    notes: list[str] = []
    started_at = datetime.now(UTC)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    # servers import the code when they start: a commit landing mid-run shows
    # as a difference between this and the commit at the end
    commit_at_start = current_commit()
    started = time.monotonic()
    status = 0
    if args.peers and "W2" not in plan.workloads:
        notes.append("--peers: W2 was not run, so no peer was measured (it runs beside W2)")
    try:
        pg_version = postgres_version(args.postgres_url) if "postgres" in backends else None
        for backend in backends:
            context = Context(backend, plan, figures, args.postgres_url, configuration, notes)
            context.redis_url = args.redis_url if args.peers else None
            for name in plan.workloads:
                _run_workload(name, context)
            status = status or (1 if context.failed else 0)
    except KeyboardInterrupt:
        notes.append("interrupted: the figures above are what was measured before the stop")
        status = 130
        pg_version = None
    finally:
        signal.signal(signal.SIGTERM, previous)
    header = {
        "command": _command_line(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": time.monotonic() - started,
        "load_average_at_start": load_at_start,
        "commit_at_start": commit_at_start,
        "backends": list(backends),
        "plan": plan.to_json(),
        "machine": describe(pg_version),
        "server": {"launcher": "python -m service.bench.launch", "uvicorn": UVICORN_SETTINGS},
        "schema": schema_method(),
        "auth": args.auth,
        "configuration": configuration,
        "notes": notes,
    }
    json_path, md_path = report.write(args.out, figures, header)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return status


def _command_line() -> str:
    """As typed: `rok bench …`, also when started as `python -m service.bench …`."""
    words = sys.argv[1:]
    return "rok " + shlex.join(words if words[:1] == ["bench"] else ["bench", *words])


def _run_workload(name: str, context: Context) -> None:
    """One workload; if it fails, say so in the report and go on with the next.

    A bench that measured four workloads and crashed in the fifth still owes
    the four; the failure is a note (and a non-zero exit status), not a loss.
    """
    try:
        WORKLOADS[name](context)
    except Exception as exc:
        context.failed = True
        context.notes.append(f"{context.backend}: {name} failed: {exc!r}"[:1000])
        context.say(f"{name} FAILED:\n{traceback.format_exc()}")


def _workloads(raw: str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    names = tuple(part.strip().upper() for part in raw.split(",") if part.strip())
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise SystemExit(f"--workloads: unknown {unknown}; choose from {', '.join(WORKLOADS)}")
    return names


def _terminate_as_interrupt() -> Any:
    """SIGTERM unwinds like Ctrl-C, so every `finally` stops its servers."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)
