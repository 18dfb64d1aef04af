"""Invariant 5, hostile values (NaN, NUL, lone surrogates, 64-bit overflow, deep
nesting): each is refused (422) or stored exactly, never a 500."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.api.refusals import JSON, detail_text

# Raw JSON bodies, because some of these are not RFC 8259 JSON but Python's parser takes them.
HOSTILE_INPUTS: dict[str, bytes] = {
    "nan": b'{"input": NaN}',
    "infinity": b'{"input": Infinity}',
    "overflowing-float": b'{"input": 1e400}',
    "int-beyond-64-bits": b'{"input": 18446744073709551617}',
    "lone-surrogate": b'{"input": "\\ud800"}',
    "nul-character": b'{"input": "a\\u0000b"}',
    "nested-300-deep": b'{"input": ' + b"[" * 300 + b"]" * 300 + b"}",
}


def test_run_input_is_refused_or_stored_exactly(raw_client: TestClient) -> None:
    problems = []
    for name, raw in HOSTILE_INPUTS.items():
        response = raw_client.post("/runs", content=raw, headers=JSON)
        if response.status_code == 422:
            detail_text(response)
            continue
        if response.status_code != 201:
            problems.append(f"{name}: POST answered {response.status_code}")
            continue
        sent = json.loads(raw)["input"]
        got = raw_client.get(f"/runs/{response.json()['id']}")
        if got.status_code != 200:
            problems.append(f"{name}: stored, then GET /runs/{{id}} answers {got.status_code}")
        elif json.dumps(got.json()["input"]) != json.dumps(sent):
            problems.append(f"{name}: stored as {json.dumps(got.json()['input'])[:40]}")
    listing = raw_client.get("/runs")
    if listing.status_code != 200:
        problems.append(f"afterwards GET /runs answers {listing.status_code} to everyone")
    assert not problems, "input neither refused (422) nor kept as sent:\n" + "\n".join(problems)


NUL = "a\u0000b"
NUL_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("tenant_id", "/runs", {"tenant_id": NUL}),
    ("handler", "/runs", {"handler": NUL}),
    ("idempotency_key", "/runs", {"idempotency_key": NUL}),
    ("expectation", "/runs", {"expectations": [{"domain": NUL, "action": "a"}]}),
    ("ack domain", "acks", {"domain": NUL, "action": "a"}),
    ("ack result_id", "acks", {"domain": "d", "action": "a", "result_id": NUL}),
    ("ack error", "acks", {"domain": "d", "action": "a", "error": NUL}),
    ("decision", "authorize", {"decision": NUL}),
    ("fail error", "fail", {"error": NUL}),
]


def test_nul_characters_are_refused_or_stored_exactly(raw_client: TestClient) -> None:
    problems = []
    for name, path, body in NUL_CASES:
        run_id = raw_client.post("/runs", json={}).json()["id"]
        before = raw_client.get(f"/runs/{run_id}").json()
        url = path if path.startswith("/") else f"/runs/{run_id}/{path}"
        response = raw_client.post(url, json=body)
        if response.status_code == 422:
            detail_text(response)
            if raw_client.get(f"/runs/{run_id}").json() != before:
                problems.append(f"{name}: refused but the run changed")
        elif response.status_code not in (200, 201):
            problems.append(f"{name}: answered {response.status_code}")
        elif name == "idempotency_key":
            if raw_client.post(url, json=body).json()["id"] != response.json()["id"]:
                problems.append(f"{name}: stored, but a replay made another run")
        elif not _holds(response.json(), NUL):
            problems.append(f"{name}: stored without its NUL character")
    query = raw_client.get("/runs", params={"tenant_id": NUL})
    if query.status_code not in (200, 422):
        problems.append(f"GET /runs?tenant_id=a%00b answered {query.status_code}")
    assert not problems, "NUL neither refused (422) nor kept:\n" + "\n".join(problems)


def _holds(value: Any, text: str) -> bool:
    """Whether `text` is one of the strings somewhere inside a JSON value."""
    if isinstance(value, str):
        return value == text
    if isinstance(value, dict):
        return any(_holds(v, text) for v in value.values())
    if isinstance(value, list):
        return any(_holds(v, text) for v in value)
    return False


HOSTILE_DETAILS: dict[str, bytes] = {
    "nan": b"NaN",
    "overflowing-float": b"1e400",
    "lone-surrogate": b'"\\ud800"',
    "nested-300-deep": b"[" * 300 + b"]" * 300,
}


def test_ack_details_are_refused_or_stored_exactly(raw_client: TestClient) -> None:
    problems = []
    for name, value in HOSTILE_DETAILS.items():
        run_id = raw_client.post("/runs", json={}).json()["id"]
        raw = b'{"domain": "d", "action": "a", "details": {"v": ' + value + b"}}"
        response = raw_client.post(f"/runs/{run_id}/acks", content=raw, headers=JSON)
        if response.status_code == 422:
            detail_text(response)
            continue
        run = raw_client.get(f"/runs/{run_id}")
        if response.status_code != 201:
            problems.append(
                f"{name}: POST answered {response.status_code}, "
                f"then GET /runs/{{id}} answers {run.status_code}"
            )
            continue
        if run.status_code != 200:
            problems.append(f"{name}: recorded, then GET /runs/{{id}} answers {run.status_code}")
        else:
            stored = json.dumps(run.json()["acks"][-1]["details"])
            if stored != json.dumps(json.loads(raw)["details"]):
                problems.append(f"{name}: stored as {stored[:40]}")
    assert not problems, "details neither refused (422) nor kept:\n" + "\n".join(problems)
