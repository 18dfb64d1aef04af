"""The OpenAPI contract and the pages that show it, as an operator's tool.

`/docs` (Swagger UI) and `/redoc` (ReDoc) load nothing from another host: their
scripts, stylesheet and favicon come from the `fastapi-offline` package and are
served under /docs/assets; no web font is asked for.

`shape_openapi` is the one pass over FastAPI's schema that makes generated
clients, in any language, just work (DESIGN section 10, issue 11 item 10):
tags with descriptions, `servers`, the bearer scheme with public operations
marked `security: []`, error answers as `application/problem+json`, and two
FastAPI habits undone: an optional parameter or body is declared as
`anyOf [X, null]`, which generators turn into "X or None" that the client must
send (here it is X, not required), and a request field's `default`, which
openapi-typescript turns into a field the client must send (here the
description says it).
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from service.api import schemas
from service.api.errors import PROBLEM_MEDIA_TYPE

ASSETS_PATH = "/docs/assets"
# Swagger UI 5 (OpenAPI 3.1), ReDoc 2, a favicon: shipped inside the package
ASSETS = files("fastapi_offline") / "static"
SECURITY_SCHEME = "apiKey"  # service.api.deps declares it (HTTPBearer)

TAGS: list[dict[str, str]] = [
    {
        "name": "runs",
        "description": "Create runs with their audit contract, list them and read one; the "
        "lifecycle moves that take a run through its phases.",
    },
    {
        "name": "workers",
        "description": "Leases: a worker claims the next waiting run and keeps it by "
        "heartbeat; every move of a leased run carries the lease's `X-Lease-Token`.",
    },
    {
        "name": "evidence",
        "description": "What governance domains owe a run: their acks, the governance check "
        "that reconciles them with the contract, the reconciliation as of now, and the "
        "sealed history's verification.",
    },
    {
        "name": "operators",
        "description": "What a person does to runs: fail or cancel one, approve or reject one "
        "that waits for approval, and read the alerts the service sent (events).",
    },
    {
        "name": "health",
        "description": "Whether the service is up; public, no key needed.",
    },
]

SERVERS: list[dict[str, str]] = [
    {
        "url": "/",
        "description": "This service (the host that serves this document); "
        "`rok serve` listens on 127.0.0.1:8000 by default.",
    }
]


def operation_id(route: APIRoute) -> str:
    """Readable operation ids: the route's name (`create_run`), or the operation_id it sets."""
    return route.name


def install_docs(app: FastAPI) -> None:
    """Serve /docs and /redoc with the assets of this service only."""
    app.mount(ASSETS_PATH, StaticFiles(directory=str(ASSETS)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            # no badge fetched from the public validator; keys stay across reloads
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )


def install_openapi(app: FastAPI) -> None:
    """Serve FastAPI's schema as `shape_openapi` shapes it.

    FastAPI builds the schema once and keeps it; shaping is idempotent, so
    shaping the kept schema again on each call changes nothing."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        return shape_openapi(generate())

    app.openapi = openapi  # type: ignore[method-assign]


def _examples_by_model() -> dict[str, list[Any]]:
    """Each model's examples as written: FastAPI drops every null from the schema it
    builds (`exclude_none`), examples included, leaving them invalid where a field is
    a required null ("error": null)."""
    found: dict[str, list[Any]] = {}
    for name in schemas.__all__:
        model = getattr(schemas, name)
        extra = getattr(model, "model_config", {}).get("json_schema_extra")
        if isinstance(extra, dict) and isinstance(extra.get("examples"), list):
            found[model.__name__] = extra["examples"]
    return found


def _request_models() -> set[str]:
    return {
        model.__name__
        for model in (getattr(schemas, name) for name in schemas.__all__)
        if isinstance(model, type) and issubclass(model, schemas.StrictModel)
    }


def _default_in_words(field: dict[str, Any]) -> None:
    """A request field's default, said in its description instead of `default`:
    openapi-typescript (7, by default) types a field with a default as always present,
    so a TypeScript client would have to send every defaulted field."""
    if "default" in field:
        said = f"Default: `{json.dumps(field.pop('default'))}`."
        field["description"] = f"{field['description']} {said}" if "description" in field else said


def shape_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.get("components", {}).get("schemas", {})
    for name, examples in _examples_by_model().items():
        if name in components:
            components[name]["examples"] = examples
    for name in _request_models() & set(components):
        for field in components[name].get("properties", {}).values():
            _default_in_words(field)
    schema["tags"] = TAGS
    schema["servers"] = SERVERS
    schema["security"] = [{SECURITY_SCHEME: []}]
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            _shape_operation(operation)
    return schema


def _shape_operation(operation: dict[str, Any]) -> None:
    if "security" not in operation:
        operation["security"] = []  # it takes no principal: a public path
    for parameter in operation.get("parameters", []):
        if "schema" in parameter and not parameter.get("required", False):
            parameter["schema"] = _not_null(parameter["schema"])
    body = operation.get("requestBody")
    if body is not None and not body.get("required", False):
        for media in body.get("content", {}).values():
            media["schema"] = _not_null(media["schema"])
    for status, answer in operation.get("responses", {}).items():
        content = answer.get("content", {})
        if status[0] in "45" and "application/json" in content:
            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf [X, {type: null}]` as X (titles and descriptions kept): a field that may be
    left out, not one that must be sent as null."""
    options = schema.get("anyOf")
    if not isinstance(options, list):
        return schema
    kept = [option for option in options if option != {"type": "null"}]
    if len(kept) != 1 or len(kept) == len(options):
        return schema
    shaped = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**kept[0], **shaped}
