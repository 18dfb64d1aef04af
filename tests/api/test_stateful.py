"""Random sequences of lifecycle calls against a model of the phase machine.

Hypothesis drives create / authorize / begin-execution / execution-complete /
acks / governance-check / begin-finalization / finalize / fail, plus garbage
(unknown fields, bad ids, invalid JSON), through the API. A small Python model
predicts each status code and each run's history; after every step the
touched run is read back and held to DESIGN.md section 8:

1. its history is a path through VALID_TRANSITIONS from CREATED, and it is
   exactly the path the model predicts; the phase is its last entry;
2. once terminal it never changes again (late acks aside) and it has exactly
   one finalize_run ack; a recorded governance verdict never changes, and acks
   after it are late;
5. a refused request leaves the run as it was (time-dependent views aside).

SQLite only, and bounded, so it stays a few seconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)

from service.model.phases import TERMINAL_PHASES, RunPhase
from tests.api.conftest import serve_in_process
from tests.api.runs_api import (
    DOMAIN_PAIRS,
    FINALIZE_RUN,
    RunsApi,
    assert_run_valid,
    finalize_run_acks,
    stored_state,
)

CONTRACTS: dict[str, list[dict[str, Any]] | None] = {
    "default": None,
    "empty": [],
    "custom": [
        {"domain": "billing", "action": "charge"},
        {"domain": "logs", "action": "start_trace"},
    ],
}
UNEXPECTED_PAIR = ("search", "index")
BODY_ENDPOINTS: dict[str, dict[str, Any]] = {
    "authorize": {"decision": "GRANTED"},
    "execution-complete": {"success": True},
    "acks": {"domain": "incidents", "action": "create_incident"},
    "governance-check": {"timeout_ms": 1},
    "finalize": {"success": True},
    "fail": {"error": "x"},
}
ALL_ENDPOINTS = [*BODY_ENDPOINTS, "begin-execution", "begin-finalization"]


@dataclass
class RunModel:
    """What the model believes about one run."""

    id: str
    contract: list[tuple[str, str]]
    phase: RunPhase = RunPhase.CREATED
    checked: bool = False
    verdict: bool | None = None
    """`passed` as the first check recorded it: it never changes."""
    execution_success: bool | None = None
    history: list[tuple[str, str]] = field(default_factory=list)
    timely_acks: list[tuple[str, str, bool]] = field(default_factory=list)  # (d, a, error?)
    acks: int = 0
    last_seen: dict[str, Any] = field(default_factory=dict)
    terminal_record: dict[str, Any] | None = None

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    def move(self, *path: RunPhase) -> None:
        for target in path:
            self.history.append((self.phase.value, target.value))
            self.phase = target

    def check_passes(self) -> bool:
        acked = {(d, a) for d, a, _ in self.timely_acks}
        failed = any(error for _, _, error in self.timely_acks)
        return set(self.contract) <= acked and not failed


def terminal_record(run: dict[str, Any]) -> dict[str, Any]:
    """What may never change once a run is terminal."""
    keep = ("phase", "history", "error", "execution_success", "governance", "updated_at")
    return {k: run[k] for k in keep}


class LifecycleMachine(RuleBasedStateMachine):
    runs = Bundle("runs")

    def __init__(self, client: TestClient) -> None:
        super().__init__()
        self.client = client
        self.api = RunsApi(client)
        self.models: dict[str, RunModel] = {}

    # -- the step every rule ends with ------------------------------------------

    def settle(self, model: RunModel, response: httpx.Response, expected: int) -> None:
        assert response.status_code == expected, (
            f"{response.request.method} {response.request.url.path}: the model expected "
            f"{expected}, the API answered {response.status_code}: {response.text[:500]}"
        )
        run = self.api.get(model.id)
        assert_run_valid(run)
        assert run["phase"] == model.phase.value
        assert [(h["from"], h["to"]) for h in run["history"]] == model.history
        assert len(run["acks"]) == model.acks
        if expected >= 400 and model.last_seen:
            assert stored_state(run) == stored_state(model.last_seen), (
                f"refused {response.request.url.path} changed run {model.id}"
            )
        if model.terminal:
            assert finalize_run_acks(run) == (1 if FINALIZE_RUN in self._pairs(run) else 0)
            if model.terminal_record is None:
                model.terminal_record = terminal_record(run)
            assert terminal_record(run) == model.terminal_record, "a terminal run changed"
        model.last_seen = run

    @staticmethod
    def _pairs(run: dict[str, Any]) -> list[tuple[str, str]]:
        return [(e["domain"], e["action"]) for e in run["expectations"]]

    def post(self, model: RunModel, action: str, body: Any = None) -> httpx.Response:
        kwargs = {} if body is None else {"json": body}
        response: httpx.Response = self.client.post(f"/runs/{model.id}/{action}", **kwargs)
        return response

    # -- lifecycle -------------------------------------------------------------

    @precondition(lambda self: len(self.models) < 3)
    @rule(target=runs, contract=st.sampled_from(sorted(CONTRACTS)))
    def create(self, contract: str) -> str:
        # an hour: no deadline passes (and no sweeper steps in) however slow the machine
        body: dict[str, Any] = {"handler": "stateful", "run_timeout_ms": 3_600_000}
        if CONTRACTS[contract] is not None:
            body["expectations"] = CONTRACTS[contract]
        response = self.client.post("/runs", json=body)
        assert response.status_code == 201, response.text
        run = response.json()
        pairs = [p for p in self._pairs(run) if p[0] != "orchestrator"]
        if contract == "default":
            assert pairs == DOMAIN_PAIRS
        model = RunModel(run["id"], pairs)
        self.models[model.id] = model
        self.settle(model, response, 201)
        return model.id

    @rule(run=runs, granted=st.booleans(), begin=st.booleans())
    def authorize(self, run: str, granted: bool, begin: bool) -> None:
        self.do_authorize(self.models[run], granted, begin)

    def do_authorize(self, model: RunModel, granted: bool, begin: bool = False) -> None:
        decision = "GRANTED" if granted else "DENIED"
        response = self.post(model, "authorize", {"decision": decision, "begin_execution": begin})
        if model.phase is RunPhase.CREATED:
            model.move(RunPhase.AUTHORIZED if granted else RunPhase.FAILED)
            if granted and begin:
                model.move(RunPhase.EXECUTING)
            model.acks += 0 if granted else 1  # finalize_run
            self.settle(model, response, 200)
        else:
            self.settle(model, response, 409)

    @rule(run=runs)
    def begin_execution(self, run: str) -> None:
        self.do_begin_execution(self.models[run])

    def do_begin_execution(self, model: RunModel) -> None:
        response = self.post(model, "begin-execution")
        if model.phase is RunPhase.AUTHORIZED:
            model.move(RunPhase.EXECUTING)
            self.settle(model, response, 200)
        else:
            self.settle(model, response, 409)

    @rule(run=runs, success=st.booleans())
    def execution_complete(self, run: str, success: bool) -> None:
        self.do_execution_complete(self.models[run], success)

    def do_execution_complete(self, model: RunModel, success: bool) -> None:
        body = {"success": success, **({} if success else {"error": "handler failed"})}
        response = self.post(model, "execution-complete", body)
        if model.phase is RunPhase.EXECUTING:
            model.move(RunPhase.GOVERNANCE_CHECK)
            model.execution_success = success
            self.settle(model, response, 200)
        else:
            self.settle(model, response, 409)

    @rule(
        run=runs,
        kind=st.sampled_from(["expected", "duplicate", "unexpected", "orchestrator"]),
        index=st.integers(0, 10),
        with_error=st.booleans(),
    )
    def ack(self, run: str, kind: str, index: int, with_error: bool) -> None:
        model = self.models[run]
        acked = [(d, a) for d, a, _ in model.timely_acks]
        if kind == "orchestrator":
            pair = FINALIZE_RUN
        elif kind == "expected" and model.contract:
            pair = model.contract[index % len(model.contract)]
        elif kind == "duplicate" and acked:
            pair = acked[index % len(acked)]
        else:
            pair = UNEXPECTED_PAIR
        self.do_ack(model, pair, "domain failed" if with_error and index % 3 == 0 else None)

    def do_ack(self, model: RunModel, pair: tuple[str, str], error: str | None) -> None:
        body = {"domain": pair[0], "action": pair[1], "error": error}
        response = self.post(model, "acks", body)
        if pair[0] == "orchestrator":
            self.settle(model, response, 422)
            return
        # late once the verdict is recorded or the run ended: drift, never evidence
        late = model.terminal or model.checked
        assert response.json()["late"] is late
        if not late:
            model.timely_acks.append((*pair, error is not None))
        model.acks += 1
        self.settle(model, response, 201)

    @rule(run=runs, strict=st.booleans(), finalize=st.booleans())
    def governance_check(self, run: str, strict: bool, finalize: bool) -> None:
        self.do_governance_check(self.models[run], strict, finalize)

    def do_governance_check(self, model: RunModel, strict: bool, finalize: bool = False) -> None:
        body = {"timeout_ms": 1, "require_all_acks": strict, "finalize": finalize}
        response = self.post(model, "governance-check", body)
        if model.phase is not RunPhase.GOVERNANCE_CHECK:
            self.settle(model, response, 409)
            return
        passed = model.check_passes() if model.verdict is None else model.verdict
        assert response.json()["passed"] is passed, (model, response.json())
        model.checked, model.verdict = True, passed
        if strict and not passed:
            model.move(RunPhase.FAILED)
            model.acks += 1  # finalize_run
        elif finalize:  # ends with the outcome execution-complete recorded
            succeeded = model.execution_success is not False
            model.move(RunPhase.FINALIZING, RunPhase.COMPLETED if succeeded else RunPhase.FAILED)
            model.acks += 1  # finalize_run
        self.settle(model, response, 200)

    @rule(run=runs)
    def begin_finalization(self, run: str) -> None:
        self.do_begin_finalization(self.models[run])

    def do_begin_finalization(self, model: RunModel) -> None:
        response = self.post(model, "begin-finalization")
        if model.phase is RunPhase.GOVERNANCE_CHECK and model.checked:
            model.move(RunPhase.FINALIZING)
            self.settle(model, response, 200)
        else:
            self.settle(model, response, 409)

    @rule(run=runs, success=st.booleans())
    def finalize(self, run: str, success: bool) -> None:
        self.do_finalize(self.models[run], success)

    def do_finalize(self, model: RunModel, success: bool) -> None:
        response = self.post(model, "finalize", {"success": success})
        allowed = model.phase in (RunPhase.GOVERNANCE_CHECK, RunPhase.FINALIZING)
        if success:
            allowed = allowed and model.checked and model.execution_success is not False
        if not allowed:
            self.settle(model, response, 409)
            return
        if model.phase is RunPhase.GOVERNANCE_CHECK and model.checked:
            model.move(RunPhase.FINALIZING)
        model.move(RunPhase.COMPLETED if success else RunPhase.FAILED)
        model.acks += 1  # finalize_run
        self.settle(model, response, 200)

    @rule(run=runs)
    def fail(self, run: str) -> None:
        model = self.models[run]
        response = self.post(model, "fail", {"error": "operator gave up"})
        if model.terminal:
            self.settle(model, response, 409)
            return
        model.move(RunPhase.FAILED)
        model.acks += 1  # finalize_run
        self.settle(model, response, 200)

    @rule(run=runs, steps=st.integers(1, 6), success=st.booleans(), ack_all=st.booleans())
    def advance(self, run: str, steps: int, success: bool, ack_all: bool) -> None:
        """Up to `steps` moves along the happy path, so random runs reach the late phases."""
        model = self.models[run]
        for _ in range(steps):
            phase = model.phase
            if phase is RunPhase.CREATED:
                self.do_authorize(model, granted=True)
            elif phase is RunPhase.AUTHORIZED:
                self.do_begin_execution(model)
            elif phase is RunPhase.EXECUTING:
                self.do_execution_complete(model, success)
            elif phase is RunPhase.GOVERNANCE_CHECK and not model.checked:
                acked = {(d, a) for d, a, _ in model.timely_acks}
                for pair in model.contract if ack_all else model.contract[:1]:
                    if pair not in acked:
                        self.do_ack(model, pair, None)
                self.do_governance_check(model, strict=False)
            elif phase is RunPhase.GOVERNANCE_CHECK:
                self.do_begin_finalization(model)
            elif phase is RunPhase.FINALIZING:
                self.do_finalize(model, success and model.execution_success is not False)
            else:
                return

    # -- garbage ---------------------------------------------------------------

    @rule(run=runs, endpoint=st.sampled_from(sorted(BODY_ENDPOINTS)))
    def unknown_field(self, run: str, endpoint: str) -> None:
        model = self.models[run]
        body = {**BODY_ENDPOINTS[endpoint], "unexpected_field": 1}
        self.settle(model, self.post(model, endpoint, body), 422)

    @rule(run=runs, endpoint=st.sampled_from(sorted(BODY_ENDPOINTS)))
    def invalid_json(self, run: str, endpoint: str) -> None:
        model = self.models[run]
        response = self.client.post(
            f"/runs/{model.id}/{endpoint}",
            content=b'{"success": tru',
            headers={"content-type": "application/json"},
        )
        self.settle(model, response, 422)

    @rule(run=runs, endpoint=st.sampled_from(ALL_ENDPOINTS), unknown=st.booleans())
    def bad_id(self, run: str, endpoint: str, unknown: bool) -> None:
        model = self.models[run]
        target = str(uuid.uuid4()) if unknown else model.id[:-1] + "z"
        body = BODY_ENDPOINTS.get(endpoint)
        kwargs = {} if body is None else {"json": body}
        response = self.client.post(f"/runs/{target}/{endpoint}", **kwargs)
        self.settle(model, response, 404 if unknown else 422)


@pytest.fixture
def sqlite_client(sqlite_migrated_url: str) -> Iterator[TestClient]:
    yield from serve_in_process(sqlite_migrated_url)


def test_random_lifecycles_keep_the_invariants(sqlite_client: TestClient) -> None:
    run_state_machine_as_test(
        # hypothesis annotates the factory as a class; it documents (and calls) any callable
        lambda: LifecycleMachine(sqlite_client),  # type: ignore[arg-type]
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
