"""What operators watch (DESIGN.md section 10): health, version, metrics, request ids, logs.

app.py builds an `ObservedApp`, calls `install_observability` once, and adds
the app's Metrics to its authority's store observers for the lifespan.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.observability.context import RequestIds
from service.api.observability.health import health_router
from service.api.observability.logs import configure_logging
from service.api.observability.metrics import Metrics
from service.api.observability.request_metrics import RequestMetrics
from service.config import Settings
from service.store.dialects import dialect_for

__all__ = ["Metrics", "ObservedApp", "configure_logging", "install_observability"]


class ObservedApp(FastAPI):
    """FastAPI with the request id and the request timer outside every other layer.

    Middleware added with add_middleware runs inside Starlette's error
    middleware, whose 500 answer would then carry no X-Request-ID and be
    timed by nobody; these two wrap the whole stack instead.
    """

    _observed: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # around the app's own entry, not by overriding build_middleware_stack: the
        # OpenTelemetry instrumentation patches that stack and expects Starlette's
        # error middleware outermost in it (service.telemetry)
        if self._observed is None:
            stack: ASGIApp = super().__call__
            metrics = getattr(self.state, "metrics", None)
            if isinstance(metrics, Metrics):
                stack = RequestMetrics(stack, metrics, self.router.routes)
            self._observed = RequestIds(stack)
        await self._observed(scope, receive, send)


def install_observability(app: FastAPI, settings: Settings) -> Metrics:
    """The health routes and this app's metrics (kept in app.state.metrics)."""
    backend = dialect_for(settings.database_url).name
    metrics = Metrics(lambda: getattr(app.state, "authority", None), backend)
    app.state.metrics = metrics
    app.include_router(health_router(settings, metrics))
    return metrics
