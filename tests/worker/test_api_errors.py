"""The client reads the service's problem documents (RFC 9457): what it raises, from
real answers of the app (in process, on SQLite), and from a body that is no problem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.config import Settings
from service.store.migrations import upgrade
from service.worker.api_errors import ApiError, Conflict, RunMissing, raise_for_status

MISSING_RUN = "/runs/6f1c9f5e-8d7a-4f55-9a43-4b9d0a0c2f11"


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path / 'rok.db'}"
    upgrade(url)
    with TestClient(
        create_app(Settings(database_url=url, auth="off")), base_url="http://127.0.0.1"
    ) as client:
        yield client


def raised(response: httpx.Response) -> ApiError:
    assert response.headers["content-type"] == "application/problem+json", response.text
    with pytest.raises(ApiError) as caught:
        raise_for_status(response)
    return caught.value


def test_a_phase_conflict_is_a_conflict_naming_the_phase(http: TestClient) -> None:
    run_id = http.post("/runs", json={}).json()["id"]
    error = raised(http.post(f"/runs/{run_id}/begin-execution"))

    assert isinstance(error, Conflict)
    assert (error.status, error.code, error.current_phase) == (409, "phase_conflict", "CREATED")
    assert "cannot move to EXECUTING" in error.detail


def test_a_lease_conflict_is_a_conflict_with_its_code(http: TestClient) -> None:
    run_id = http.post("/runs", json={}).json()["id"]
    assert http.post("/runs/claim", json={"worker_id": "w"}).status_code == 200
    error = raised(http.post(f"/runs/{run_id}/authorize", json={"decision": "GRANTED"}))

    assert isinstance(error, Conflict)
    assert error.code == "lease_conflict"
    assert error.current_phase is None


def test_a_missing_run_is_run_missing(http: TestClient) -> None:
    error = raised(http.get(MISSING_RUN))

    assert isinstance(error, RunMissing)
    assert (error.status, error.code) == (404, "not_found")
    assert MISSING_RUN.rsplit("/", 1)[1] in error.detail


def test_a_validation_error_carries_its_fields_and_a_one_line_detail(http: TestClient) -> None:
    error = raised(http.post("/runs", json={"run_timeout_ms": 0}))

    assert (error.status, error.code) == (422, "invalid_request")
    assert [e["loc"] for e in error.errors] == [["body", "run_timeout_ms"]]
    assert "run_timeout_ms" in error.detail and "\n" not in error.detail


def test_a_body_that_is_no_problem_document_still_raises_with_its_text() -> None:
    error = raised_from(httpx.Response(502, text="<html>bad gateway</html>"))
    assert (error.status, error.code, error.detail) == (502, None, "<html>bad gateway</html>")


def test_an_older_services_list_of_field_errors_reads_as_one_sentence() -> None:
    old = {"detail": [{"loc": ["body", "x"], "msg": "bad x"}, {"loc": ["body"], "msg": "bad y"}]}
    error = raised_from(httpx.Response(422, json=old))
    assert error.detail == "bad x; bad y"


def raised_from(response: httpx.Response) -> ApiError:
    with pytest.raises(ApiError) as caught:
        raise_for_status(response)
    return caught.value
