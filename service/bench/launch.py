"""The server side of a bench: uvicorn serving one app with fixed settings.

Both the rok service and the limits app are started through here, so the
platform limits are measured on exactly the server settings the service ran
with (one process, uvicorn's automatic loop and HTTP implementation, no access
log: at thousands of requests per second a log line per request is a cost of
the logging setup, not of rok).

    python -m service.bench.launch service|limits HOST PORT
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

APPS = {
    "service": "service.api.app:create_app",
    "limits": "service.bench.limits:create_limits_app",
}

UVICORN_SETTINGS: dict[str, Any] = {
    "workers": 1,
    "loop": "auto",
    "http": "auto",
    "log_level": "warning",
    "access_log": False,
    "timeout_keep_alive": 30,
    "backlog": 4096,  # W4 opens a thousand connections at once
}


def main(argv: list[str]) -> None:
    app, host, port = argv
    uvicorn.run(APPS[app], factory=True, host=host, port=int(port), **UVICORN_SETTINGS)


if __name__ == "__main__":
    main(sys.argv[1:])
