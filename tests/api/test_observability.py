"""X-Request-ID, /healthz, /version and the log lines of a request (in process)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from service import __version__
from service.api.app import create_app
from service.api.observability.context import MAX_REQUEST_ID_LENGTH, accepted_request_id
from service.api.observability.logs import HANDLER_NAME, configure_logging, wants_json
from service.authority import Authority
from service.config import Settings
from service.store.migrations import head_revision
from tests.api.conftest import LOCAL_BASE_URL
from tests.api.runs_api import RunsApi, expect
from tests.support.authorities import checked_authority

RUN_ID = "5f0c7a51-5a7e-4b8e-9d7c-2b7e0c4d9a11"


@pytest.fixture
def authority(sqlite_migrated_url: str) -> Iterator[Authority]:
    """SQLite: request ids and log lines do not depend on the backend (health does: below)."""
    with checked_authority(sqlite_migrated_url, auth="off") as current:
        yield current


@pytest.fixture
def on_both(migrated_url: str) -> Iterator[tuple[Authority, TestClient]]:
    with checked_authority(migrated_url, auth="off") as current:
        app = create_app(authority=current, sweep=False)
        with TestClient(app, base_url=LOCAL_BASE_URL) as client:
            yield current, client


def probed_app(authority: Authority) -> FastAPI:
    """The app plus two routes a test needs: one that logs from a worker thread, one that raises."""
    app = create_app(authority=authority, sweep=False)

    def probe(run_id: str) -> dict[str, str]:  # a sync route: it runs in a worker thread
        logging.getLogger("rok.probe").warning("probing run %s", run_id)
        return {"run_id": run_id}

    def boom() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/probe/{run_id}", probe, methods=["GET"])
    app.add_api_route("/boom", boom, methods=["GET"])
    return app


@pytest.fixture
def http(authority: Authority) -> Iterator[TestClient]:
    with TestClient(
        probed_app(authority), base_url=LOCAL_BASE_URL, raise_server_exceptions=False
    ) as client:
        yield client


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    """rok's logging configured onto a buffer (JSON), the process's logging restored after."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    uvicorn = {name: logging.getLogger(name) for name in ("uvicorn", "uvicorn.access")}
    saved_uvicorn = {name: (lg.propagate, list(lg.handlers)) for name, lg in uvicorn.items()}
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="INFO"), stream)
    try:
        yield stream
    finally:
        for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
            root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, (propagate, handlers) in saved_uvicorn.items():
            uvicorn[name].propagate, uvicorn[name].handlers = propagate, handlers


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# -- X-Request-ID -----------------------------------------------------------------


def test_a_request_id_sent_is_echoed(http: TestClient) -> None:
    longest = "r" * MAX_REQUEST_ID_LENGTH
    for given in ("abc-123", "trace 7/step:2", longest):
        answer = http.get("/healthz", headers={"X-Request-ID": given})
        assert answer.headers["x-request-id"] == given


def test_without_a_request_id_one_is_made_for_each_request(http: TestClient) -> None:
    first = http.get("/healthz").headers["x-request-id"]
    second = http.get("/healthz").headers["x-request-id"]
    assert first != second
    assert len(first) == 32 and int(first, 16) >= 0


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "r" * (MAX_REQUEST_ID_LENGTH + 1),
        "forged\nlevel=ERROR",
        "\x1b[31mred",
        "tab\there",
        "caf\xe9",
    ],
)
def test_a_garbage_request_id_is_replaced(http: TestClient, garbage: str) -> None:
    assert accepted_request_id(garbage) is None
    raw = [(b"x-request-id", garbage.encode("latin-1"))]
    answer = http.request("GET", "/healthz", headers=raw)  # type: ignore[arg-type]
    expect(answer, 200)
    made = answer.headers["x-request-id"]
    assert made != garbage and len(made) == 32


def test_every_answer_carries_the_request_id_refusals_and_500s_too(
    http: TestClient, sqlite_migrated_url: str
) -> None:
    headers = {"X-Request-ID": "req-500"}
    crashed = http.get("/boom", headers=headers)
    assert crashed.status_code == 500
    assert crashed.headers["x-request-id"] == "req-500"
    invalid = http.post("/runs", json={"no": "such field"}, headers={"X-Request-ID": "req-422"})
    assert invalid.status_code == 422
    assert invalid.headers["x-request-id"] == "req-422"
    with TestClient(
        create_app(Settings(database_url=sqlite_migrated_url)), base_url="http://rok.test"
    ) as keyed:
        refused = keyed.get("/runs", headers={"X-Request-ID": "req-401"})
    assert refused.status_code == 401
    assert refused.headers["x-request-id"] == "req-401"


def test_a_request_logs_with_its_request_id_and_run_id_from_any_thread(
    http: TestClient, captured_log: io.StringIO
) -> None:
    expect(http.get(f"/probe/{RUN_ID}", headers={"X-Request-ID": "probe-1"}), 200)
    http.get("/boom", headers={"X-Request-ID": "probe-2"})

    [line] = [entry for entry in json_lines(captured_log) if entry["logger"] == "rok.probe"]
    assert line["message"] == f"probing run {RUN_ID}"
    assert line["request_id"] == "probe-1"
    assert line["run_id"] == RUN_ID
    assert line["level"] == "WARNING"
    assert "time" in line and "context" not in line


def test_a_line_outside_any_request_has_no_request_fields(
    http: TestClient, captured_log: io.StringIO
) -> None:
    expect(http.get(f"/probe/{RUN_ID}", headers={"X-Request-ID": "before"}), 200)
    logging.getLogger("rok.probe").info("outside any request")

    [outside] = [e for e in json_lines(captured_log) if e["message"] == "outside any request"]
    assert not {"request_id", "run_id", "tenant_id"} & set(outside)
    # a line about a run outside any request (the sweeper's) names the run itself
    logging.getLogger("rok.sweeper").info("skipped", extra={"run_id": RUN_ID})
    [swept] = [e for e in json_lines(captured_log) if e["message"] == "skipped"]
    assert swept["run_id"] == RUN_ID and "request_id" not in swept


# -- log configuration --------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_on_a_terminal_json_otherwise_unless_rok_log_format_says() -> None:
    assert wants_json(Settings(), io.StringIO()) is True
    assert wants_json(Settings(), Terminal()) is False
    assert wants_json(Settings(log_format="json"), Terminal()) is True
    assert wants_json(Settings(log_format="text"), io.StringIO()) is False


def test_text_lines_carry_the_request_ids_too(http: TestClient, captured_log: io.StringIO) -> None:
    stream = Terminal()
    configure_logging(Settings(log_level="WARNING"), stream)  # replaces the JSON handler
    expect(http.get(f"/probe/{RUN_ID}", headers={"X-Request-ID": "text-1"}), 200)
    logging.getLogger("rok.probe").info("below ROK_LOG_LEVEL")

    [line] = stream.getvalue().splitlines()
    assert "WARNING" in line and "rok.probe" in line
    assert f"[request_id=text-1 run_id={RUN_ID}]: probing run {RUN_ID}" in line
    assert captured_log.getvalue() == ""  # one rok handler at a time, not two
    assert [h.get_name() for h in logging.getLogger().handlers].count(HANDLER_NAME) == 1


# -- /healthz and /version ------------------------------------------------------------


def test_healthz_and_version_never_touch_the_database(
    on_both: tuple[Authority, TestClient],
) -> None:
    authority, http = on_both
    engine = authority.database.engine
    touched: list[str] = []

    def checkout(*_: Any) -> None:
        touched.append("checkout")

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        touched.append(sql)

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "before_cursor_execute", statement)
    try:
        health = expect(http.get("/healthz"), 200).json()
        expect(http.get("/version"), 200)
        assert touched == []
        expect(http.get("/readyz"), 200)  # the listener does see a probe that reads
        assert touched
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "before_cursor_execute", statement)
    assert health == {
        "status": "ok",
        "database": authority.database.dialect.name,
        "rok_enabled": True,
    }


def test_version_names_the_code_its_schema_revision_and_the_backend(
    on_both: tuple[Authority, TestClient],
) -> None:
    authority, http = on_both
    version = expect(http.get("/version"), 200).json()

    assert version == {
        "version": __version__,
        "schema_revision": head_revision(),
        "backend": authority.database.dialect.name,
    }
    assert http.app.version == __version__  # type: ignore[attr-defined]
    assert expect(http.get("/openapi.json"), 200).json()["info"]["version"] == __version__


def test_healthz_still_says_whether_the_service_governs(sqlite_migrated_url: str) -> None:
    with checked_authority(sqlite_migrated_url, auth="off", rok_enabled=False) as ungoverned:
        app = create_app(authority=ungoverned, sweep=False)
        with TestClient(app, base_url=LOCAL_BASE_URL) as client:
            assert expect(client.get("/healthz"), 200).json()["rok_enabled"] is False
            RunsApi(client)  # the app serves runs as usual
