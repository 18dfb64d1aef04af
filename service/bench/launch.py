"""The server side of a bench: uvicorn serving one app with fixed settings.

Both the rok service and the limits app are started through here, so the
platform limits are measured on exactly the server settings the service ran
with (one process, uvicorn's automatic loop and HTTP implementation, no access
log: at thousands of requests per second a log line per request is a cost of
the logging setup, not of rok).

    python -m service.bench.launch service|limits HOST PORT [WORKERS]

WORKERS > 1 (W7) is uvicorn's multi-process mode, as `rok serve --workers N`
runs it: a supervisor and N worker processes accepting on one socket, each
building its own app from the factory (its own pool, PostgreSQL listener and
sweeper). Each worker ties itself to the supervisor (children.die_with_group_leader),
so a bench killed with SIGKILL leaves no worker behind.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import uvicorn

from service.bench.children import die_with_group_leader

if TYPE_CHECKING:
    from fastapi import FastAPI

APPS = {
    "service": "service.api.app:create_app",
    "limits": "service.bench.limits:create_limits_app",
}
# what each worker process of a multi-process server builds (see worker_service_app)
WORKER_APPS = {"service": "service.bench.launch:worker_service_app"}

UVICORN_SETTINGS: dict[str, Any] = {
    "workers": 1,
    "loop": "auto",
    "http": "auto",
    "log_level": "warning",
    "access_log": False,
    "timeout_keep_alive": 30,
    "backlog": 4096,  # W4 opens a thousand connections at once
}


def worker_service_app() -> FastAPI:
    """The service's app factory, in a worker process that dies with its supervisor."""
    from service.api.app import create_app

    die_with_group_leader()
    return create_app()


def main(argv: list[str]) -> None:
    app, host, port, *rest = argv
    workers = int(rest[0]) if rest else 1
    settings = {**UVICORN_SETTINGS, "workers": workers}
    target = WORKER_APPS[app] if workers > 1 else APPS[app]
    uvicorn.run(target, factory=True, host=host, port=int(port), **settings)


if __name__ == "__main__":
    main(sys.argv[1:])
