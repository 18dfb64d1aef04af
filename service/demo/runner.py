"""The demo: submit a batch of runs to a running service and watch a WorkerPool drive them.

    python -m service.demo --url http://127.0.0.1:8000      (or: rok demo)

The pool runs the three reference domains with the policies in
policies.toml. One research run asks (through its input) for the incidents
domain to stay silent, so its governance check reports
incidents/create_incident missing. Each run prints one line as it finishes.

Against a service with ROK_AUTH=required, give it a key (--key or ROK_API_KEY)
with the scopes runs:read, runs:write, worker and acks:<domain> for each of the
reference domains (incidents, policies, logs).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from service.demo.handlers import HANDLERS
from service.domains import IncidentsDomain, PoliciesDomain, TracesDomain
from service.worker import RunResult, WorkerPool, muted_by_input

POLICY_FILE = Path(__file__).with_name("policies.toml")
DEFAULT_URL = "http://127.0.0.1:8000"
HEALTH_WAIT_S = 30.0

# (handler, what the line should show, extra fields of POST /runs)
BATCH: list[tuple[str, str, dict[str, Any]]] = [
    ("research_agent", "an agent that succeeds", {}),
    (
        "research_agent",
        "succeeds, incidents domain muted",
        {
            "input": {"question": "Summarise the incident log", "mute_domains": ["incidents"]},
        },
    ),
    ("spendthrift_agent", "blows its cost budget mid-run", {}),
    ("slow_agent", "runs past its 1 s timeout", {"run_timeout_ms": 1000}),
    ("flaky_agent", "its tool raises", {}),
    ("forbidden_agent", "denied by policy", {}),
]


@dataclass
class DemoReport:
    url: str
    submitted: dict[str, str] = field(default_factory=dict)
    """run id -> what the run demonstrates"""
    finished: list[RunResult] = field(default_factory=list)


def run_demo(
    url: str = DEFAULT_URL,
    out: TextIO = sys.stdout,
    governance_timeout_ms: int = 2000,
    concurrency: int = 8,
    timeout_s: float = 120.0,
    api_key: str | None = None,
) -> DemoReport:
    """`api_key=None` reads ROK_API_KEY (unset: no key, for ROK_AUTH=off)."""
    api_key = api_key if api_key is not None else os.environ.get("ROK_API_KEY") or None
    report = DemoReport(url.rstrip("/"))
    wait_until_healthy(report.url)
    report.submitted = submit_batch(report.url, api_key)
    print(
        f"submitted {len(report.submitted)} runs to {report.url}; a WorkerPool with the "
        "policies, traces and incidents domains drives them.\n"
        "One line per run as it ends: phase, handler, what it shows, the reconciliation of "
        "its audit contract (missing/failed evidence), incidents opened, its error.",
        file=out,
    )

    def show(result: RunResult) -> None:
        if result.run_id in report.submitted:
            report.finished.append(result)
            print("  " + result.summary(report.submitted[result.run_id]), file=out)

    pool = demo_pool(report.url, concurrency, governance_timeout_ms, show, api_key)
    pending = set(report.submitted)

    def all_ours_done(result: RunResult) -> bool:
        pending.discard(result.run_id)
        return not pending

    pool.run_until(all_ours_done, timeout_s=timeout_s)
    print(
        f"\nSee every run, its history, acks, incidents and reconciliation:\n"
        f"  {report.url}/docs     (the OpenAPI UI: try GET /runs)\n"
        f"  curl {report.url}/runs\n"
        f"  curl {report.url}/runs/<id>/reconciliation",
        file=out,
    )
    return report


def demo_pool(
    url: str,
    concurrency: int = 8,
    governance_timeout_ms: int | None = 2000,
    on_result: Any = None,
    api_key: str | None = None,
) -> WorkerPool:
    """The demo handlers with the reference domains; any run can mute a domain by input."""
    domains = [
        muted_by_input(PoliciesDomain(POLICY_FILE)),
        muted_by_input(TracesDomain()),
        muted_by_input(IncidentsDomain()),
    ]
    return WorkerPool(
        url,
        HANDLERS,
        concurrency=concurrency,
        domains=domains,
        governance_timeout_ms=governance_timeout_ms,
        on_result=on_result,
        drain_timeout_s=5.0,
        api_key=api_key,
    )


def submit_batch(url: str, api_key: str | None = None) -> dict[str, str]:
    batch_id = uuid.uuid4().hex[:8]
    submitted = {}
    auth = {"Authorization": f"Bearer {api_key}"} if api_key else None
    with httpx.Client(base_url=url, timeout=10.0, headers=auth) as client:
        for index, (handler, story, fields) in enumerate(BATCH):
            key = f"demo-{batch_id}-{index}"
            body = {"handler": handler, "idempotency_key": key, **fields}
            response = client.post("/runs", json=body, headers={"Idempotency-Key": key})
            response.raise_for_status()
            submitted[response.json()["id"]] = story
    return submitted


def wait_until_healthy(url: str, timeout_s: float = HEALTH_WAIT_S) -> None:
    """`make run` starts the service and the demo together: give the service time to start."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=2.0) as client:
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"rok demo: no rok service answered at {url} within {timeout_s:.0f}s"
                )
            time.sleep(0.2)


def run_demo_command(url: str, api_key: str | None, serve: bool) -> int:
    """`rok demo`: the batch, then (with `serve`) the pool keeps serving the demo handlers."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    api_key = api_key or os.environ.get("ROK_API_KEY") or None
    run_demo(url, api_key=api_key)
    if serve:
        print(
            "\nThe pool keeps serving the demo handlers; POST /runs with one of "
            f"{', '.join(HANDLERS)} (Ctrl-C to stop)."
        )
        pool = demo_pool(url, on_result=lambda r: print(f"  {r.summary()}"), api_key=api_key)
        pool.run()
    return 0
