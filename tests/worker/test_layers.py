"""The worker talks to the service over HTTP only, and depends on no domain implementation.

Checked in a fresh interpreter, by what importing a package actually loads:
a lazy import inside a function would slip past a grep, not past this once
the function runs, and a transitive import is caught as well.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = (
    "service.kernel",
    "service.store",
    "service.api",
    "service.authority",
    "service.sweeper",
)


def loaded_after_importing(*modules: str) -> set[str]:
    """The service.* modules an interpreter holds after importing `modules` (and walking
    every submodule of a package, so nothing is left unimported)."""
    script = f"""
import importlib, json, pkgutil, sys
for name in {list(modules)!r}:
    module = importlib.import_module(name)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
        if not info.name.endswith(".__main__"):  # a program, not part of the package
            importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("service"))))
"""
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(output))


def within(loaded: set[str], packages: tuple[str, ...]) -> set[str]:
    return {m for m in loaded if any(m == p or m.startswith(p + ".") for p in packages)}


def test_the_worker_loads_neither_the_domains_nor_the_server() -> None:
    loaded = loaded_after_importing("service.worker")
    assert within(loaded, ("service.domains", *SERVER_SIDE)) == set()


def test_the_domains_load_the_worker_but_not_the_server() -> None:
    loaded = loaded_after_importing("service.domains")
    assert "service.worker.hooks" in loaded
    assert within(loaded, SERVER_SIDE) == set()
