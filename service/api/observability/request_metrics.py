"""rok_http_request_duration_seconds: each request's latency by route template and status.

The label is the route's template (`/runs/{run_id}/authorize`), never the
raw path, so a million runs make no new series. The router leaves the route
it chose in the scope; a request refused before routing (a 401 from the
auth gate, a 413 from the body limit) is matched here against the app's
routes, and a path no route has is `unmatched`.
"""

from __future__ import annotations

import time

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.observability.metrics import Metrics

UNMATCHED = "unmatched"


class RequestMetrics:
    """ASGI middleware timing each HTTP request from its start to its last byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

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
        path = getattr(route, "path", None)
        if isinstance(path, str) and path:
            return path
        for candidate in self.routes:  # only requests the router never saw get here
            match, _ = candidate.matches(scope)
            if match is not Match.NONE:
                found = getattr(candidate, "path", None)
                return found if isinstance(found, str) and found else UNMATCHED
        return UNMATCHED
