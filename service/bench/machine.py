"""What the bench ran on: cores, CPU, memory, Python and the versions that matter."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sqlite3
import subprocess
from typing import Any

from service.bench.children import lifeline

PACKAGES = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "pydantic", "httpx", "psycopg")


def describe(postgres_version: str | None) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(_memory_kib() / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "packages": {name: _version(name) for name in PACKAGES},
        "uvicorn_extras": {name: _version(name) for name in ("uvloop", "httptools")},
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version,
        "commit_at_end": current_commit(),
        # other work on the machine shares the cores with the server and client
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_kib() -> int:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def current_commit() -> str | None:
    """The checked-out commit (read-only), so a table can be traced to the code."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=os.path.dirname(__file__),
            preexec_fn=lifeline(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None
