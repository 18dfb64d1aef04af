"""The live service the contract is fuzzed against, set up once per module.

The app runs in this process on a migrated SQLite file with ROK_AUTH=required;
a TestClient runs its lifespan (the Authority, the sweeper) for the whole
module and seeds it. Schemathesis sends its cases through its own in-process
ASGI client (`Live.call`), never entered, so it never starts a second lifespan.

Keys: an admin key; a key of tenant B with every scope but admin. Runs: a few
of tenant A, one in each phase a run can rest in (and one leased), so that the
generated run ids can be aimed at runs that exist (`Live.aim`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis import Case, Response
from schemathesis.python import asgi
from schemathesis.python.asgi import ASGIApp

from service.api.app import create_app
from service.authority import Authority
from service.config import Settings
from service.model.phases import utc_now
from service.store.keys import ADMIN, RUNS_READ, RUNS_WRITE, WORKER
from service.store.migrations import upgrade

TENANT_A = "tenant-a"
TENANT_B = "tenant-b"
# the domains of the default contract and of the documented examples
DOMAINS = ("incidents", "policies", "logs", "traces", "orchestrator")
GOVERNANCE_TIMEOUT_MS = 50
# a claim may wait up to 60 s and a governance check up to 24 h for acks: valid
# values above these are lowered, so that a case costs milliseconds, not minutes
WAIT_CAP_MS = 20
WAITS = {"wait_ms": 60_000, "timeout_ms": 24 * 3600 * 1000}

AnyCase = Case[Any]


@dataclass
class Live:
    app: FastAPI
    client: TestClient
    session: requests.Session
    admin: dict[str, str]
    tenant_b: dict[str, str]
    tenant_a_runs: list[str]
    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def call(self, case: AnyCase, headers: dict[str, str], tally: str) -> Response:
        """Send the case to the app in-process with `headers` (its key, or none)."""
        _bound_waits(case)
        response = case.call(session=self.session, headers=headers, app=self.app)
        self.statuses.setdefault(tally, Counter())[response.status_code] += 1
        return response

    def aim(self, case: AnyCase, every: int) -> str | None:
        """Point a generated run id at a run of tenant A (every `every`-th one, by its
        value), so the cases reach runs that exist; the id aimed at, or None."""
        value = (case.path_parameters or {}).get("run_id")
        try:
            generated = uuid.UUID(str(value))
        except ValueError:
            return None  # not a UUID: it must be refused as one, as generated
        if generated.int % every:
            return None
        chosen = self.tenant_a_runs[(generated.int // every) % len(self.tenant_a_runs)]
        assert case.path_parameters is not None
        case.path_parameters["run_id"] = chosen
        return chosen


def _bound_waits(case: AnyCase) -> None:
    # in the body (claims, governance checks) and the query (the owed feed's long poll)
    for fields in (case.body, case.query):
        if not isinstance(fields, dict):
            continue
        for name, most in WAITS.items():
            value = fields.get(name)
            if isinstance(value, str) and value.isdecimal():
                value = int(value)  # a query parameter, as generated
            if type(value) is int and WAIT_CAP_MS < value <= most:
                fields[name] = WAIT_CAP_MS


def _seed_tenant_a(client: TestClient, admin: dict[str, str]) -> list[str]:
    """Runs of tenant A in CREATED, AUTHORIZED, EXECUTING, GOVERNANCE_CHECK, FAILED and
    COMPLETED, and one leased to a worker."""

    def post(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = client.post(path, json=body or {}, headers=admin)
        assert answer.status_code in (200, 201), (path, answer.status_code, answer.text)
        result: dict[str, Any] = answer.json()
        return result

    def create(handler: str = "contract") -> str:
        run_id: str = post("/runs", {"tenant_id": TENANT_A, "handler": handler})["id"]
        return run_id

    runs = [create() for _ in range(7)]
    _created, authorized, executing, checking, failed, completed, _spare = runs
    post(f"/runs/{authorized}/authorize", {"decision": "GRANTED"})
    for run in (executing, checking, completed):
        post(f"/runs/{run}/authorize", {"decision": "GRANTED", "begin_execution": True})
    for run in (checking, completed):
        post(f"/runs/{run}/execution-complete", {"success": True})
    post(f"/runs/{completed}/governance-check", {"timeout_ms": 1})
    post(f"/runs/{completed}/finalize", {"success": True})
    post(f"/runs/{failed}/fail", {"error": "seeded as failed"})
    leased = create("leased")
    post("/runs/claim", {"worker_id": "tenant-a-worker", "handlers": ["leased"]})
    phases = {client.get(f"/runs/{run}", headers=admin).json()["phase"] for run in runs}
    assert {"CREATED", "AUTHORIZED", "EXECUTING", "GOVERNANCE_CHECK", "COMPLETED"} <= phases
    return [*runs, leased]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    path: Path = tmp_path_factory.mktemp("contract") / "rok.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    settings = Settings(
        database_url=url, auth="required", governance_timeout_ms=GOVERNANCE_TIMEOUT_MS
    )
    app = create_app(settings)
    with TestClient(app) as client:
        authority: Authority = app.state.authority
        now = utc_now()
        _, admin_key = authority.keys.create(TENANT_A, [ADMIN], "contract admin", now)
        other_scopes = [RUNS_READ, RUNS_WRITE, WORKER, *(f"acks:{d}" for d in DOMAINS)]
        _, other_key = authority.keys.create(TENANT_B, other_scopes, "contract tenant B", now)
        admin = {"Authorization": f"Bearer {admin_key}"}
        current = Live(
            app=app,
            client=client,
            session=asgi.get_client(cast(ASGIApp, app)),
            admin=admin,
            tenant_b={"Authorization": f"Bearer {other_key}"},
            tenant_a_runs=_seed_tenant_a(client, admin),
        )
        yield current
        for tally, statuses in current.statuses.items():
            counted = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
            print(f"\n{tally}: {statuses.total()} cases ({counted})")
