"""The committed OpenAPI contract (openapi/openapi.json) is what the app serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.api.openapi_export import openapi_schema, render_openapi

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
