"""A small client of the /runs API for tests, and the section 8 invariants over run JSON.

`RunsApi` wraps anything with httpx's `request` (a `TestClient` or an
`httpx.Client` talking to a real server) and checks status codes as it goes,
so a test reads as the lifecycle it drives.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from service.api.schemas import RunOut
from service.model.phases import TERMINAL_PHASES, VALID_TRANSITIONS, RunPhase

DOMAIN_PAIRS: list[tuple[str, str]] = [
    ("incidents", "create_incident"),
    ("policies", "evaluate_policy"),
    ("logs", "start_trace"),
    ("logs", "complete_trace"),
]
FINALIZE_RUN = ("orchestrator", "finalize_run")
DEFAULT_PAIRS = [*DOMAIN_PAIRS, FINALIZE_RUN]
LIFECYCLE_ORDER = [
    RunPhase.CREATED,
    RunPhase.AUTHORIZED,
    RunPhase.EXECUTING,
    RunPhase.GOVERNANCE_CHECK,
    RunPhase.FINALIZING,
    RunPhase.COMPLETED,
]
UNKNOWN_RUN = "00000000-0000-4000-8000-000000000000"


class Http(Protocol):
    """The part of httpx's `request` that RunsApi uses (TestClient, httpx.Client)."""

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response: ...


class UnexpectedStatus(AssertionError):
    pass


def expect(response: httpx.Response, status: int | tuple[int, ...]) -> httpx.Response:
    allowed = (status,) if isinstance(status, int) else status
    if response.status_code not in allowed:
        raise UnexpectedStatus(
            f"{response.request.method} {response.request.url.path}: expected {allowed}, "
            f"got {response.status_code}: {response.text[:2000]}"
        )
    return response


class RunsApi:
    def __init__(self, http: Http) -> None:
        self.http = http

    # -- raw -------------------------------------------------------------

    def call(
        self, method: str, path: str, body: Any = None, status: int | tuple[int, ...] = 200
    ) -> httpx.Response:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        return expect(self.http.request(method, path, **kwargs), status)

    def move(
        self, run_id: str, action: str, body: Any = None, status: int | tuple[int, ...] = 200
    ) -> dict[str, Any]:
        """POST /runs/{id}/{action}; the JSON answer (the run, or the error)."""
        result: dict[str, Any] = self.call("POST", f"/runs/{run_id}/{action}", body, status).json()
        return result

    # -- endpoints ----------------------------------------------------------

    def create(self, status: int | tuple[int, ...] = 201, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", "/runs", body, status).json()
        return result

    def get(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/runs/{run_id}").json()
        return result

    def list(self, **query: Any) -> dict[str, Any]:
        params = {k: v for k, v in query.items() if v is not None}
        result: dict[str, Any] = expect(
            self.http.request("GET", "/runs", params=params), 200
        ).json()
        return result

    def all_summaries(self, **query: Any) -> builtins.list[dict[str, Any]]:
        """Every run as GET /runs lists it (a summary), newest first."""
        items: builtins.list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.list(limit=500, cursor=cursor, **query)
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    def all_runs(self, **query: Any) -> builtins.list[dict[str, Any]]:
        """Every run whole (GET /runs/{id}), in the list's order."""
        return [self.get(summary["id"]) for summary in self.all_summaries(**query)]

    def total(self) -> int:
        return len(self.all_summaries())

    def authorize(self, run_id: str, decision: str = "GRANTED", **extra: Any) -> dict[str, Any]:
        return self.move(run_id, "authorize", {"decision": decision, **extra})

    def begin_execution(self, run_id: str) -> dict[str, Any]:
        return self.move(run_id, "begin-execution")

    def execution_complete(self, run_id: str, success: bool = True, **extra: Any) -> dict[str, Any]:
        return self.move(run_id, "execution-complete", {"success": success, **extra})

    def ack(
        self, run_id: str, domain: str, action: str, status: int = 201, **extra: Any
    ) -> dict[str, Any]:
        return self.move(run_id, "acks", {"domain": domain, "action": action, **extra}, status)

    def ack_all(self, run_id: str) -> None:
        """Every domain expectation of the run acked once, without errors."""
        for exp in self.get(run_id)["expectations"]:
            if exp["domain"] != "orchestrator":
                self.ack(run_id, exp["domain"], exp["action"], result_id=f"{exp['action']}-1")

    def governance_check(
        self, run_id: str, timeout_ms: int = 1, require_all_acks: bool = False
    ) -> dict[str, Any]:
        return self.move(
            run_id,
            "governance-check",
            {"timeout_ms": timeout_ms, "require_all_acks": require_all_acks},
        )

    def begin_finalization(self, run_id: str) -> dict[str, Any]:
        return self.move(run_id, "begin-finalization")

    def finalize(self, run_id: str, success: bool = True, **extra: Any) -> dict[str, Any]:
        return self.move(run_id, "finalize", {"success": success, **extra})

    def fail(self, run_id: str, error: str = "abandoned by the test") -> dict[str, Any]:
        return self.move(run_id, "fail", {"error": error})

    # -- composites ---------------------------------------------------------

    def at(self, phase: RunPhase, *, checked: bool = False, **body: Any) -> str:
        """A new run in `phase` (GOVERNANCE_CHECK with `checked`: all acked, check recorded)."""
        run_id: str = self.create(**body)["id"]
        if phase is RunPhase.CREATED:
            return run_id
        if phase is RunPhase.FAILED:
            self.fail(run_id, "made to fail")
            return run_id
        self.authorize(run_id)
        if phase is RunPhase.AUTHORIZED:
            return run_id
        self.begin_execution(run_id)
        if phase is RunPhase.EXECUTING:
            return run_id
        self.execution_complete(run_id)
        if phase is RunPhase.GOVERNANCE_CHECK and not checked:
            return run_id
        self.ack_all(run_id)
        assert self.governance_check(run_id)["passed"] is True
        if phase is RunPhase.GOVERNANCE_CHECK:
            return run_id
        self.begin_finalization(run_id)
        if phase is RunPhase.FINALIZING:
            return run_id
        assert phase is RunPhase.COMPLETED, phase
        self.finalize(run_id)
        return run_id


# -- invariants over run JSON (DESIGN.md section 8) ------------------------------


def parse_time(value: str) -> datetime:
    """An ISO 8601 timestamp that must carry a timezone."""
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"timestamp {value!r} has no timezone"
    return parsed.astimezone(UTC)


def pairs(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(i["domain"], i["action"]) for i in items]


def assert_history_path(run: dict[str, Any]) -> None:
    """Invariant 1: history is a path through VALID_TRANSITIONS from CREATED ending at phase."""
    phase = RunPhase.CREATED
    for index, entry in enumerate(run["history"]):
        assert set(entry) >= {"from", "to", "at", "reason"}, entry
        source, target = RunPhase(entry["from"]), RunPhase(entry["to"])
        assert source is phase, f"run {run['id']} entry {index} leaves {source}, was in {phase}"
        if entry.get("kind") in ("attempt", "event"):  # in place (a retry, a control event)
            assert source is target, entry
            continue
        assert target in VALID_TRANSITIONS[source], (
            f"run {run['id']} entry {index}: {source} -> {target} is not a legal move"
        )
        parse_time(entry["at"])
        phase = target
    assert run["phase"] == phase.value, (
        f"run {run['id']} is in {run['phase']} but its history ends at {phase}"
    )


def finalize_run_acks(run: dict[str, Any]) -> int:
    return pairs(run["acks"]).count(FINALIZE_RUN)


def assert_finalize_run_once(run: dict[str, Any]) -> None:
    """Invariant 2: a terminal run owing finalize_run has exactly one such ack, a live run none."""
    owes = FINALIZE_RUN in pairs(run["expectations"])
    count = finalize_run_acks(run)
    if RunPhase(run["phase"]) in TERMINAL_PHASES and owes:
        assert count == 1, f"terminal run {run['id']} has {count} finalize_run acks"
    else:
        assert count == 0, f"run {run['id']} ({run['phase']}) has {count} finalize_run acks"


def assert_run_valid(run: dict[str, Any]) -> None:
    assert_history_path(run)
    assert_finalize_run_once(run)
    for field in ("created_at", "updated_at"):
        parse_time(run[field])
    for ack in run["acks"]:
        parse_time(ack["at"])
    for exp in run["expectations"]:
        if exp["deadline"] is not None:
            parse_time(exp["deadline"])
    terminal_moves = [h for h in run["history"] if RunPhase(h["to"]) in TERMINAL_PHASES]
    assert len(terminal_moves) <= 1, f"run {run['id']} ended {len(terminal_moves)} times"
    assert_matches_contract(run)


def assert_matches_contract(run: dict[str, Any]) -> None:
    """The run JSON is exactly what the documented RunOut model would produce.

    The API writes runs without re-validating them through pydantic; this is
    the check that the hand-built JSON and the OpenAPI contract agree.
    """
    assert RunOut.model_validate(run).model_dump(mode="json", by_alias=True) == run


def stored_state(run: dict[str, Any]) -> dict[str, Any]:
    """What a refused request must leave untouched: everything but time-dependent views.

    `reconciliation` and the expectation statuses are computed against now;
    the rest is what was stored.
    """
    kept = {k: v for k, v in run.items() if k != "reconciliation"}
    kept["expectations"] = [
        {k: v for k, v in exp.items() if k != "status"} for exp in run["expectations"]
    ]
    return kept


class WaitingCheck:
    """A strict governance check sent from a thread of its own, against a real server.

    TestClient serialises requests, so a check that waits while the test
    sends acks needs a real server and a second connection. `with` starts it
    and returns once the request left; `answer()` waits for its response.
    """

    def __init__(self, base_url: str, run_id: str, timeout_ms: int = 30_000) -> None:
        self.base_url = base_url
        self.run_id = run_id
        self.body = {"timeout_ms": timeout_ms, "require_all_acks": True}
        self.responses: list[httpx.Response] = []
        self._sent = threading.Event()
        self._thread = threading.Thread(target=self._send)

    def _send(self) -> None:
        hooks = {"request": [lambda _request: self._sent.set()]}
        with httpx.Client(base_url=self.base_url, timeout=60, event_hooks=hooks) as http:
            path = f"/runs/{self.run_id}/governance-check"
            self.responses.append(http.post(path, json=self.body))

    def __enter__(self) -> WaitingCheck:
        self._thread.start()
        assert self._sent.wait(10), "the governance check was never sent"
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(60)

    @property
    def answered(self) -> bool:
        return bool(self.responses)

    def answer(self, within_s: float = 25) -> dict[str, Any]:
        self._thread.join(within_s)
        assert not self._thread.is_alive(), "the governance check did not wake up"
        result: dict[str, Any] = expect(self.responses[0], 200).json()
        return result
