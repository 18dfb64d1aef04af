"""The committed OpenAPI contract (openapi/openapi.json) is what the app serves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.openapi_export import openapi_schema, render_openapi
from service.config import Settings
from service.store.migrations import upgrade

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "openapi" / "openapi.json"
REGENERATE = "run `make openapi` (python -m service.api.openapi_export openapi/openapi.json)"

# DESIGN.md section 4, and what issues added since (the ack batch, the ungoverned outcome).
SECTION_4_ENDPOINTS = [
    ("post", "/runs"),
    ("get", "/runs"),
    ("get", "/runs/{run_id}"),
    ("post", "/runs/claim"),
    ("post", "/runs/{run_id}/heartbeat"),
    ("post", "/runs/{run_id}/acks/batch"),
    ("post", "/runs/{run_id}/ungoverned-outcome"),
    ("post", "/runs/{run_id}/authorize"),
    ("post", "/runs/{run_id}/begin-execution"),
    ("post", "/runs/{run_id}/execution-complete"),
    ("post", "/runs/{run_id}/acks"),
    ("post", "/runs/{run_id}/governance-check"),
    ("post", "/runs/{run_id}/begin-finalization"),
    ("post", "/runs/{run_id}/finalize"),
    ("post", "/runs/{run_id}/fail"),
    ("get", "/runs/{run_id}/reconciliation"),
    ("get", "/healthz"),
    # run control, DESIGN section 11
    ("post", "/runs/{run_id}/cancel"),
    ("post", "/runs/{run_id}/approve"),
    ("post", "/runs/{run_id}/reject"),
    ("post", "/runs/{run_id}/release"),
]


def test_committed_schema_is_what_the_app_serves() -> None:
    committed = COMMITTED.read_bytes()
    current = render_openapi().encode("utf-8")
    assert current == committed, f"openapi/openapi.json is out of date: {REGENERATE}"


def test_export_writes_the_committed_bytes_without_a_database(tmp_path: Path) -> None:
    """The CLI writes the same bytes, and building the app opened no database."""
    target = tmp_path / "out" / "openapi.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        # were the app to open its database, this is where it would appear
        "ROK_DATABASE_URL": f"sqlite:///{tmp_path / 'must-not-exist.db'}",
    }
    subprocess.run(
        [sys.executable, "-m", "service.api.openapi_export", str(target)],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    assert target.read_bytes() == COMMITTED.read_bytes(), REGENERATE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], (
        "exporting the schema created files: it must not open any database"
    )


def test_building_the_app_opens_no_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("create_app() opened a database; only the lifespan may")

    monkeypatch.setattr(sqlalchemy, "create_engine", refuse)
    monkeypatch.setattr("service.store.database.create_engine", refuse)
    monkeypatch.chdir(tmp_path)
    assert openapi_schema()["paths"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("method", "path"), SECTION_4_ENDPOINTS)
def test_every_section_4_endpoint_is_in_the_contract(method: str, path: str) -> None:
    schema = json.loads(COMMITTED.read_text())
    assert method in schema["paths"].get(path, {}), f"{method.upper()} {path} is missing"


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """The component schemas a request body may be ($ref, possibly inside anyOf)."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return [schema["components"]["schemas"][name]]
    found: list[dict[str, Any]] = []
    for option in node.get("anyOf", []):
        found += _resolve(schema, option)
    return found


def _operations_with_bodies() -> list[tuple[str, str, dict[str, Any]]]:
    schema = json.loads(COMMITTED.read_text())
    return [
        (method, path, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    _operations_with_bodies(),
    ids=[f"{m.upper()} {p}" for m, p, _ in _operations_with_bodies()],
)
def test_every_request_body_has_an_example(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    schema = json.loads(COMMITTED.read_text())
    media = operation["requestBody"]["content"]["application/json"]
    if media.get("example") is not None or media.get("examples"):
        return
    models = _resolve(schema, media["schema"])
    assert models, f"{method.upper()} {path}: the body has no named schema"
    for model in models:
        examples = model.get("examples")
        assert examples, f"{method.upper()} {path}: {model.get('title')} has no examples"
        # an example must be a body the endpoint accepts: only declared fields
        for example in examples:
            assert set(example) <= set(model["properties"]), (method, path, example)
            assert set(model.get("required", [])) <= set(example), (method, path, example)


def test_request_bodies_forbid_unknown_fields() -> None:
    """The contract says so too, so generated clients know a typo is refused."""
    schema = json.loads(COMMITTED.read_text())
    for method, path, operation in _operations_with_bodies():
        media = operation["requestBody"]["content"]["application/json"]
        for model in _resolve(schema, media["schema"]):
            assert model.get("additionalProperties") is False, (method, path, model["title"])


# -- the contract as an operator's tool and for generated clients (issue 11) ------------

PUBLIC_OPERATIONS = {("get", path) for path in ("/healthz", "/readyz", "/version", "/metrics")}
ERROR_STATUSES = {"400", "401", "403", "404", "409", "413", "422", "429"}
FOREIGN = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    schema = json.loads(COMMITTED.read_text())
    return [
        (method, path, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    ]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_every_operation_is_named_described_and_tagged() -> None:
    schema = json.loads(COMMITTED.read_text())
    tags = {tag["name"]: tag["description"] for tag in schema["tags"]}
    assert set(tags) >= {"runs", "workers", "evidence", "operators", "health"}
    assert all(tags.values()), tags
    assert schema["servers"], "no servers: generated clients and Swagger UI need one"
    ids = [operation["operationId"] for _, _, operation in _operations()]
    assert len(set(ids)) == len(ids), ids
    for method, path, operation in _operations():
        where = f"{method.upper()} {path}"
        # readable: a verb and a noun, not FastAPI's create_run_runs_post
        assert re.fullmatch(r"[a-z]+(_[a-z]+){0,3}", operation["operationId"]), where
        assert not operation["operationId"].endswith(("_get", "_post")), where
        assert operation.get("summary") and operation.get("description"), where
        assert operation["tags"] and set(operation["tags"]) <= set(tags), where
    named = {(m, p): o["operationId"] for m, p, o in _operations()}
    assert named[("post", "/runs")] == "create_run"
    assert named[("post", "/runs/claim")] == "claim_run"
    assert named[("post", "/runs/{run_id}/authorize")] == "authorize_run"
    assert named[("post", "/runs/{run_id}/heartbeat")] == "heartbeat"


def test_the_bearer_scheme_covers_every_operation_but_the_public_ones() -> None:
    schema = json.loads(COMMITTED.read_text())
    (name,) = schema["components"]["securitySchemes"]
    assert schema["components"]["securitySchemes"][name] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"][name]["description"],
    }
    assert schema["security"] == [{name: []}]
    for method, path, operation in _operations():
        expected: list[dict[str, list[str]]] = (
            [] if (method, path) in PUBLIC_OPERATIONS else [{name: []}]
        )
        assert operation["security"] == expected, (method, path)


def test_every_error_answer_is_a_problem_document() -> None:
    for method, path, operation in _operations():
        for status, answer in operation["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            if (method, path, status) == ("get", "/readyz", "503"):
                continue  # not an error of the request: the readiness report, with its reason
            (media_type,) = answer["content"]
            assert media_type == "application/problem+json", (method, path, status)
            model = "ValidationProblem" if status == "422" else "Problem"
            media = answer["content"][media_type]
            assert media["schema"] == {"$ref": f"#/components/schemas/{model}"}
            assert media["example"]["status"] == int(status), (method, path, status)
            assert media["example"]["code"], (method, path, status)


def test_each_operation_documents_the_statuses_it_can_answer_and_no_other() -> None:
    for method, path, operation in _operations():
        documented = set(operation["responses"]) & ERROR_STATUSES
        if (method, path) in PUBLIC_OPERATIONS:
            assert documented == set(), (method, path)
            continue
        expected = {"401", "403", "422", "429"}
        if "{run_id}" in path:
            expected.add("404")
        if method == "post":
            expected |= {"409", "413"}  # an Idempotency-Key in progress; the body limit
        if method == "put":
            expected.add("413")  # the body limit (Idempotency-Key is for POST only)
        assert documented == expected, (method, path)
    responses = json.loads(COMMITTED.read_text())["paths"]["/runs/{run_id}"]["get"]["responses"]
    assert "409" not in responses


def test_generators_get_plain_types() -> None:
    """No `prefixItems` tuple, no optional parameter or body typed `X or null`, and no
    request field whose default would make openapi-typescript require it."""
    schema = json.loads(COMMITTED.read_text())
    assert not [node for node in _walk(schema) if "prefixItems" in node]
    pair = schema["components"]["schemas"]["ReconciliationOut"]["properties"]["missing"]
    assert {k: pair["items"][k] for k in ("type", "items", "minItems", "maxItems")} == {
        "type": "array",
        "items": {"type": "string"},
        "minItems": 2,
        "maxItems": 2,
    }
    for method, path, operation in _operations():
        for parameter in operation.get("parameters", []):
            if "schema" in parameter and not parameter.get("required"):
                assert "anyOf" not in parameter["schema"], (method, path, parameter["name"])
        body = operation.get("requestBody", {})
        for media in body.get("content", {}).values():
            assert "anyOf" not in media["schema"], (method, path)
    lease = next(
        p
        for p in schema["paths"]["/runs/{run_id}/finalize"]["post"]["parameters"]
        if p.get("name") == "X-Lease-Token"
    )
    assert lease["schema"]["type"] == "string" and not lease["required"]
    for method, path, operation in _operations_with_bodies():
        media = operation["requestBody"]["content"]["application/json"]
        for model in _resolve(schema, media["schema"]):
            for name, field in model["properties"].items():
                assert "default" not in field, (method, path, model["title"], name)
    run = schema["components"]["schemas"]["RunOut"]
    assert set(run["required"]) == set(run["properties"]), "an answer sends every field"


@pytest.fixture
def docs_client(tmp_path: Path) -> Iterator[TestClient]:
    """With ROK_AUTH=required: the docs are public all the same."""
    url = f"sqlite:///{tmp_path / 'rok.db'}"
    upgrade(url)
    settings = Settings(database_url=url, auth="required")
    with TestClient(create_app(settings), base_url="http://rok.internal") as client:
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_load_nothing_from_another_host(docs_client: TestClient, page: str) -> None:
    html = docs_client.get(page)
    assert html.status_code == 200, html.text
    assert not FOREIGN.search(html.text), f"{page} loads from another host:\n{html.text}"
    assert "fonts.googleapis" not in html.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    assert any(a.endswith(".js") for a in assets) and any("favicon" in a for a in assets)
    for asset in assets:
        answer = docs_client.get(asset)
        assert answer.status_code == 200 and answer.content, asset
    spec = docs_client.get("/openapi.json")
    assert spec.status_code == 200 and spec.json()["info"]["title"]


def test_no_swagger_validator_badge_is_fetched(docs_client: TestClient) -> None:
    """Swagger UI asks a public validator for a badge unless told not to."""
    assert '"validatorUrl": null' in docs_client.get("/docs").text
