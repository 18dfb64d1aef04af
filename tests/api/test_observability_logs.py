"""The log of a real `rok serve`: JSON lines that parse, access log included, with the ids.

A server's output goes to a file (not a terminal), so without ROK_LOG_FORMAT
it writes JSON; each access line names its request id, the run it was about
and the run's tenant, and the method, path and status as fields.
"""

from __future__ import annotations

import json
from typing import Any

from tests.api.runs_api import expect
from tests.support.server import running_server


def parsed(log: str) -> list[dict[str, Any]]:
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines
    return [json.loads(line) for line in lines]  # every line, not only ours


def test_a_served_request_logs_json_with_its_request_run_and_tenant_ids(
    migrated_url: str,
) -> None:
    with running_server(migrated_url) as server, server.client() as http:
        created = http.post("/runs", json={"tenant_id": "acme"}, headers={"X-Request-ID": "mk-1"})
        run_id = expect(created, 201).json()["id"]
        read = http.get(f"/runs/{run_id}", headers={"X-Request-ID": "rd-1"})
        assert expect(read, 200).headers["x-request-id"] == "rd-1"
        moved = http.post(f"/runs/{run_id}/authorize", json={"decision": "GRANTED"})
        made_id = expect(moved, 200).headers["x-request-id"]
        http.post(f"/runs/{run_id}/fail", json={"error": "done"})
        lines = parsed(server.log_text())

    assert any(line["message"] == "Application startup complete." for line in lines)
    access = {line["request_id"]: line for line in lines if line["logger"] == "uvicorn.access"}
    create = access["mk-1"]
    assert (create["method"], create["path"], create["status"]) == ("POST", "/runs", 201)
    assert create["run_id"] == run_id  # named by the store once the run was written
    assert create["tenant_id"] == "acme"
    assert '"POST /runs HTTP/1.1" 201' in create["message"]
    get = access["rd-1"]
    assert (get["path"], get["status"], get["run_id"]) == (f"/runs/{run_id}", 200, run_id)
    authorize = access[made_id]  # an id the service made is logged as the one it answered
    assert authorize["run_id"] == run_id and authorize["tenant_id"] == "acme"
    assert authorize["level"] == "INFO" and "time" in authorize


def test_rok_log_format_text_writes_text_lines_with_the_ids(sqlite_migrated_url: str) -> None:
    env = {"ROK_LOG_FORMAT": "text"}
    with running_server(sqlite_migrated_url, env) as server, server.client() as http:
        expect(http.get("/healthz", headers={"X-Request-ID": "text-1"}), 200)
        log = server.log_text()

    [line] = [line for line in log.splitlines() if "text-1" in line]
    assert " INFO    uvicorn.access [request_id=text-1]: " in line
    assert line.endswith('"GET /healthz HTTP/1.1" 200')
    assert not any(line.lstrip().startswith("{") for line in log.splitlines())
