"""Invariant 5 (DESIGN.md section 8), the means to check it: bad input is refused
with a clear error and leaves what was stored unchanged.

Every refusal test snapshots the runs through the API (the whole list, each run
as GET /runs/{id} shows it) before the bad request and compares after it
(`nothing_changes`), and checks the answer's status and problem document (`refused`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.api.runs_api import RunsApi

JSON = {"content-type": "application/json"}


@contextlib.contextmanager
def nothing_changes(api: RunsApi) -> Iterator[None]:
    """Every stored run, as the API shows it, is the same after the block as before."""
    before = api.all_runs()
    yield
    after = api.all_runs()
    assert len(after) == len(before), "a refused request created or removed a run"
    for old, new in zip(before, after, strict=True):
        assert new == old, f"a refused request changed run {old['id']}"


def detail_text(response: httpx.Response) -> str:
    """The error's problem document (RFC 9457), checked: a `detail` sentence that says
    something, its `code`, and on a 422 `errors` naming where and what. Returned as
    one text (detail and field errors) for the words a test looks for."""
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body = response.json()
    for member in ("type", "title", "status", "detail", "instance", "code"):
        assert member in body, (member, body)
    assert body["status"] == response.status_code, body
    detail = body["detail"]
    assert isinstance(detail, str) and detail, body
    if response.status_code != 422:
        return detail
    assert body["errors"], body
    for error in body["errors"]:
        assert isinstance(error["loc"], list) and error["msg"], error
    return detail + " " + json.dumps(body["errors"])


def refused(response: httpx.Response, status: int, *mentions: str) -> httpx.Response:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: expected {status}, "
        f"got {response.status_code}: {response.text[:1000]}"
    )
    text = detail_text(response)
    for word in mentions:
        assert word in text, f"the error does not mention {word!r}: {text}"
    return response


def send(
    http: TestClient, method: str, path: str, body: Any = None, raw: bytes | None = None
) -> httpx.Response:
    response: httpx.Response
    if raw is not None:
        response = http.request(method, path, content=raw, headers=JSON)
    else:
        response = http.request(method, path, **({} if body is None else {"json": body}))
    return response
