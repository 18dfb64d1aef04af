"""GET /runs lists summaries, read without the runs' history, and refuses forged cursors.

`GET /runs?limit=500` returned every run whole (input, history, acks); the
items are now summaries (DESIGN section 9) and `GET /runs/{id}` stays the
whole run. Forged cursors answered 500 (an OverflowError at the calendar's
edge, a RecursionError on deep JSON); they are 422 now. Both backends.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from service.api.schemas import RunSummaryOut
from service.authority import Authority
from service.model.phases import RunPhase
from tests.api.refusals import refused
from tests.api.runs_api import RunsApi

SUMMARY_FIELDS = {
    "id",
    "tenant_id",
    "handler",
    "phase",
    "attempt",
    "created_at",
    "updated_at",
    "error",
    "reconciliation_status",
}


def authority_of(client: TestClient) -> Authority:
    authority: Authority = client.app.state.authority  # type: ignore[attr-defined]
    return authority


@contextlib.contextmanager
def statements(client: TestClient) -> Iterator[list[str]]:
    """The SQL the service runs during the block."""
    seen: list[str] = []
    engine = authority_of(client).database.engine

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def make_runs(api: RunsApi) -> list[str]:
    """Runs in several states, with history, input, acks and an error."""
    made = [
        api.create(tenant_id="acme", handler="summarize", input={"doc": "q3.pdf"})["id"],
        api.at(RunPhase.EXECUTING, handler="h", input=[1, 2, 3]),
        api.at(RunPhase.COMPLETED),
        api.at(RunPhase.FAILED),
    ]
    api.ack(made[1], "incidents", "create_incident", result_id="inc-1", details={"x": "y"})
    return made


def test_the_list_answers_summaries_the_whole_run_stays_at_its_own_path(
    client: TestClient, api: RunsApi
) -> None:
    made = make_runs(api)
    page = api.list(limit=500)
    assert page["next_cursor"] is None
    assert [item["id"] for item in page["items"]] == list(reversed(made))
    for item in page["items"]:
        assert set(item) == SUMMARY_FIELDS, item
        assert RunSummaryOut.model_validate(item).model_dump(mode="json") == item
        whole = api.get(item["id"])
        assert {k: whole[k] for k in SUMMARY_FIELDS - {"reconciliation_status"}} == {
            k: item[k] for k in SUMMARY_FIELDS - {"reconciliation_status"}
        }
        assert item["reconciliation_status"] == whole["reconciliation"]["status"]
        assert {"input", "history", "acks", "expectations"} <= set(whole)
    statuses = {item["id"]: item["reconciliation_status"] for item in page["items"]}
    assert statuses[made[0]] == "PENDING"  # nothing acked yet: never COMPLETE
    assert statuses[made[2]] == "COMPLETE"
    assert statuses[made[3]] == "INCOMPLETE"  # failed before any evidence arrived


def test_the_list_reads_no_history_and_no_run_one_by_one(client: TestClient, api: RunsApi) -> None:
    make_runs(api)
    with statements(client) as few:
        api.list(limit=2)
    for _ in range(6):
        make_runs(api)
    with statements(client) as many:
        assert len(api.list(limit=500)["items"]) == 28
    assert len(many) == len(few), "the number of queries grew with the page (N+1)"
    for sql in many:
        assert "transitions" not in sql, sql
        assert "runs.input" not in sql, sql
        assert "acks.details" not in sql and "acks.result_id" not in sql, sql


def cursor_of(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        # a date at the calendar's edge, whose offset overflows it in UTC (OverflowError)
        cursor_of(["9999-12-31T23:59:59.999999-01:00", "00000000-0000-4000-8000-000000000000"]),
        cursor_of(["0001-01-01T00:00:00+01:00", "00000000-0000-4000-8000-000000000000"]),
        # JSON nested deeper than the decoder recurses (RecursionError)
        cursor_of(b"[" * 5_000 + b"]" * 5_000),
        # not base64, base64 of no JSON, JSON of another shape
        "%%%not-base64%%%",
        "!",
        cursor_of(b"\xff\xfe\x00garbage"),
        cursor_of({"created_at": "2024-01-01T00:00:00+00:00"}),
        cursor_of([1, 2]),
        cursor_of(["2024-01-01T00:00:00", "no timezone"]),
    ],
    ids=[
        "year-9999-minus-one-hour",
        "year-1-plus-one-hour",
        "deep-json",
        "not-base64",
        "one-character",
        "not-json",
        "an-object",
        "numbers",
        "naive-date",
    ],
)
def test_a_forged_cursor_is_422_never_500(raw_client: TestClient, cursor: str) -> None:
    RunsApi(raw_client).create()
    answer = raw_client.get("/runs", params={"cursor": cursor})
    refused(answer, 422, "cursor")
