"""A client generated from the committed contract just works (issue 11 item 10).

openapi-python-client generates `rok_client` from openapi/openapi.json into a
temporary folder; mypy --strict checks tests/contract/generated_client_run.py
against it (typed calls, no casts), and that program drives one whole governed
run through a real rok server process (SQLite, ROK_AUTH=off) to COMPLETED.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.store.migrations import upgrade
from tests.support.server import running_server

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "openapi" / "openapi.json"
DRIVER = Path(__file__).with_name("generated_client_run.py")
PACKAGE = "rok_client"
# no formatter run over the generated code (ruff is not on PATH in every environment)
GENERATOR_CONFIG = f"post_hooks: []\npackage_name_override: {PACKAGE}\n"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding the generated `rok_client` package."""
    folder = tmp_path_factory.mktemp("generated")
    config = folder / "generator.yaml"
    config.write_text(GENERATOR_CONFIG)
    command = [
        sys.executable,
        "-m",
        "openapi_python_client",
        "generate",
        "--path",
        str(CONTRACT),
        "--output-path",
        str(folder / PACKAGE),
        "--meta",
        "none",
        "--config",
        str(config),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # the generator warns about what it could not model; a clean contract leaves nothing out
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert (folder / PACKAGE / "api" / "runs" / "create_run.py").is_file()
    return folder


def environment(generated: Path) -> dict[str, str]:
    path = os.pathsep.join([str(generated), str(ROOT)])
    return {**os.environ, "PYTHONPATH": path, "MYPYPATH": str(generated)}


def test_the_driver_type_checks_against_the_generated_client(
    generated: Path, tmp_path: Path
) -> None:
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file=",  # not the project's: only the driver and what it imports
        "--strict",
        "--no-incremental",
        f"--cache-dir={tmp_path / 'mypy'}",
        str(DRIVER),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=environment(generated), check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'rok.db'}"
    upgrade(url)
    with running_server(url) as server:
        yield server.base_url


def test_a_governed_run_goes_through_the_generated_client(generated: Path, server_url: str) -> None:
    command = [sys.executable, "-m", "tests.contract.generated_client_run", server_url]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment(generated),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "COMPLETED" in done.stdout
