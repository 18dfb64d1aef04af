"""rok_http_request_duration_seconds: each request's latency by route template and status.

The label is the route's template (`/runs/{run_id}/authorize`), never the
raw path, so a million runs make no new series. The router leaves the route
it chose in the scope; a request refused before routing (a 401 from the
auth gate, a 413 from the body limit) is matched here against the app's
routes, and a path no route has is `unmatched`.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.observability.metrics import Metrics

UNMATCHED = "unmatched"


class RequestMetrics:
    """ASGI middleware timing each HTTP request from its start to its last byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self._templates: list[tuple[re.Pattern[str], str, set[str] | None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe_request(scope["method"], self.template(scope), status, seconds)

    def template(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path_format", None) or getattr(route, "path", None)
        if isinstance(path, str) and path:
            return path
        # only requests the router never saw get here (refused by a gate, or 404)
        if self._templates is None:
            self._templates = route_templates(self.routes)
        method, found = scope.get("method"), None
        for pattern, template, methods in self._templates:
            if pattern.match(scope.get("path", "")):
                if methods is None or method in methods:
                    return template
                found = found or template  # the router would answer 405 on it
        return found or UNMATCHED


def route_templates(routes: list[BaseRoute]) -> list[tuple[re.Pattern[str], str, set[str] | None]]:
    """(regex, template, methods) of every route, in the order the router tries them.

    FastAPI (0.120+) keeps included routers as one entry each and resolves
    their routes lazily; `iter_route_contexts` flattens them with their full paths.
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # an older FastAPI: the router's list is flat already
        flat: list[Any] = list(routes)
    else:
        flat = list(iter_route_contexts(routes))
    templates = []
    for route in flat:
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if isinstance(template, str) and template:
            pattern, _, _ = compile_path(template)
            methods = getattr(route, "methods", None)
            templates.append((pattern, template, set(methods) if methods else None))
    return templates
