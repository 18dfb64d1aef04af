"""Limits (DESIGN section 9): ROK_MAX_BODY_BYTES -> 413, ROK_MAX_ACKS_PER_RUN -> 422,
ROK_RATE_LIMIT -> 429 with Retry-After; each refusal names the limit and changes nothing.
"""

from __future__ import annotations

import functools
from typing import Any

from service.errors import InvalidRequest
from service.model.phases import RunPhase
from service.store.keys import RUNS_READ, RUNS_WRITE
from service.store.runs import RunFilter
from tests.api.gates import Served, serving
from tests.api.refusals import nothing_changes, refused
from tests.support.races import race

ACK_PAIRS = [
    ("incidents", "create_incident"),
    ("policies", "evaluate_policy"),
    ("logs", "start_trace"),
    ("logs", "complete_trace"),
]


def ack(domain: str, action: str, result_id: str | None = None) -> dict[str, Any]:
    return {"domain": domain, "action": action, "result_id": result_id}


def stored_runs(served: Served) -> list[Any]:
    """The runs as stored (read past the API, which a rate limit may refuse)."""
    records, _ = served.authority.store.list(RunFilter(), 500, None)
    return [(r.row.id, r.row.phase, len(r.history), len(r.acks)) for r in records]


# -- ROK_MAX_BODY_BYTES ----------------------------------------------------------------


def test_a_body_over_rok_max_body_bytes_is_413_naming_the_limit(migrated_url: str) -> None:
    with serving(migrated_url, max_body_bytes=2048) as served:
        run_id = served.api.create(handler="h")["id"]
        with nothing_changes(served.api):
            answer = refused(
                served.post("/runs", {"input": "x" * 2100}), 413, "2048", "ROK_MAX_BODY_BYTES"
            )
            assert answer.json()["code"] == "too_large"
            refused(served.post(f"/runs/{run_id}/fail", {"error": "x" * 2100}), 413, "2048")
        assert served.post("/runs", {"input": "x" * 1900}).status_code == 201


# -- ROK_MAX_ACKS_PER_RUN -----------------------------------------------------------------


def test_acks_past_rok_max_acks_per_run_are_422_naming_the_limit(migrated_url: str) -> None:
    with serving(migrated_url, max_acks_per_run=3) as served:
        run_id = served.api.at(RunPhase.EXECUTING)
        acks_path = f"/runs/{run_id}/acks"
        assert served.post(acks_path, ack(*ACK_PAIRS[0])).status_code == 201
        with nothing_changes(served.api):
            # a batch that would go past the limit is refused whole
            batch = {"acks": [ack(*pair) for pair in ACK_PAIRS[1:]]}
            refused(served.post(f"{acks_path}/batch", batch), 422, "ROK_MAX_ACKS_PER_RUN", "3")
        assert served.post(f"{acks_path}/batch", {"acks": batch["acks"][:2]}).status_code == 201
        with nothing_changes(served.api):
            refused(served.post(acks_path, ack(*ACK_PAIRS[3])), 422, "ROK_MAX_ACKS_PER_RUN")
        # the kernel's own finalize_run ack is not a client's: the run still ends
        served.api.fail(run_id, "done with it")
        run = served.api.get(run_id)
        assert run["phase"] == "FAILED"
        pairs = [(a["domain"], a["action"]) for a in run["acks"]]
        assert pairs == [*ACK_PAIRS[:3], ("orchestrator", "finalize_run")]


def test_acks_racing_for_the_last_places_never_pass_the_limit(migrated_url: str) -> None:
    """Counted in the transaction that inserts, under the run's lock: exactly the limit."""
    with serving(migrated_url, max_acks_per_run=5) as served:
        run_id = served.api.at(RunPhase.EXECUTING)
        kernels = [served.authority.kernel(run_id) for _ in range(12)]
        outcomes = race(
            [
                functools.partial(kernel.ack, "incidents", f"action-{i}")
                for i, kernel in enumerate(kernels)
            ]
        )
        recorded = [o for o in outcomes if o[0] == "ok"]
        refusals = [o[1] for o in outcomes if o[0] == "error"]
        assert len(recorded) == 5
        assert all(isinstance(e, InvalidRequest) for e in refusals), refusals
        assert all("ROK_MAX_ACKS_PER_RUN" in str(e) for e in refusals)
        assert len(served.api.get(run_id)["acks"]) == 5


# -- ROK_RATE_LIMIT -------------------------------------------------------------------------


def test_past_rok_rate_limit_a_request_is_429_with_retry_after(
    sqlite_migrated_url: str,
) -> None:
    with serving(sqlite_migrated_url, rate_limit="3/minute") as served:
        served.api.create(handler="h")
        served.api.list()
        before = stored_runs(served)
        served.api.list()
        answer = refused(served.post("/runs", {"handler": "h"}), 429, "3/minute", "ROK_RATE_LIMIT")
        assert answer.json()["code"] == "rate_limited"
        assert 1 <= int(answer.headers["retry-after"]) <= 60
        assert stored_runs(served) == before
        # GETs count too, and health and docs are never limited
        refused(served.http.get("/runs"), 429)
        for _ in range(5):
            assert served.http.get("/healthz").status_code == 200
        assert served.http.get("/openapi.json").status_code == 200


def test_the_rate_limit_is_per_principal(sqlite_migrated_url: str) -> None:
    with serving(sqlite_migrated_url, auth="required", rate_limit="2/minute") as served:
        _, as_alice = served.key(RUNS_WRITE, RUNS_READ)
        _, as_bob = served.key(RUNS_WRITE, RUNS_READ)
        for _ in range(2):
            assert served.post("/runs", {"handler": "h"}, headers=as_alice).status_code == 201
        refused(served.post("/runs", {"handler": "h"}, headers=as_alice), 429, "2/minute")
        assert served.post("/runs", {"handler": "h"}, headers=as_bob).status_code == 201
        # a refused request spends nothing: alice is still refused, bob has one left
        refused(served.post("/runs", {"handler": "h"}, headers=as_alice), 429)
        assert served.post("/runs", {"handler": "h"}, headers=as_bob).status_code == 201
        refused(served.post("/runs", {"handler": "h"}, headers=as_bob), 429)
        assert len(stored_runs(served)) == 4


def test_without_rok_rate_limit_nothing_is_limited(sqlite_migrated_url: str) -> None:
    with serving(sqlite_migrated_url) as served:
        assert served.authority.settings.rate_limit is None
        for _ in range(30):
            assert served.http.get("/runs").status_code == 200
