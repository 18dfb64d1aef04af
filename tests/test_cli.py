"""The `rok` command as operators run it: a child process, its exit code and its words."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import pytest

from service.cli import rok as rok_group
from service.store import migrations
from service.store.migrations import REPO_ROOT
from tests.support.schemas import ROK_TABLES, table_names
from tests.support.server import free_port, running_server


def rok(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m service ARGS` from outside the repo, so nothing depends on the cwd."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
        cwd=Path.home() if Path.home().is_dir() else "/",
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_db_upgrade_creates_the_schema(database_url: str) -> None:
    done = rok("db", "upgrade", "--url", database_url)

    assert done.returncode == 0, done.stderr
    assert f"to {migrations.head_revision()}" in done.stdout
    assert table_names(database_url) == ROK_TABLES | {"alembic_version"}


def test_db_upgrade_of_a_sqlite_file_from_another_directory(tmp_path: Path) -> None:
    path = tmp_path / "rok.db"

    done = rok("db", "upgrade", "--url", f"sqlite:///{path}")

    assert done.returncode == 0, done.stderr
    assert table_names(f"sqlite:///{path}") == ROK_TABLES | {"alembic_version"}


def test_db_upgrade_reads_rok_database_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.db'}"

    assert rok("db", "upgrade", ROK_DATABASE_URL=url).returncode == 0

    assert table_names(url) == ROK_TABLES | {"alembic_version"}


def test_db_current_and_check_follow_the_upgrade(database_url: str) -> None:
    head = migrations.head_revision()
    before = rok("db", "current", "--url", database_url)
    refused = rok("db", "check", "--url", database_url)
    rok("db", "upgrade", "--url", database_url)
    after = rok("db", "current", "--url", database_url)

    assert before.stdout.strip() == f"none (the code needs {head})"
    assert refused.returncode == 2
    assert "rok db upgrade" in refused.stderr
    assert after.stdout.strip() == f"{head} (up to date)"
    assert rok("db", "check", "--url", database_url).returncode == 0


def test_serve_refuses_a_malformed_variable_and_names_it(tmp_path: Path) -> None:
    done = rok(
        "serve",
        ROK_GOVERNANCE_TIMEOUT_MS="abc",
        ROK_DATABASE_URL=f"sqlite:///{tmp_path / 'rok.db'}",
    )

    assert done.returncode == 2
    assert done.stderr.startswith("rok: ROK_GOVERNANCE_TIMEOUT_MS=")
    assert "Traceback" not in done.stderr


def test_serve_refuses_an_unmigrated_database_and_says_what_to_run(database_url: str) -> None:
    done = rok("serve", ROK_DATABASE_URL=database_url)

    assert done.returncode == 2
    assert "has no rok schema" in done.stderr
    assert "rok db upgrade" in done.stderr
    assert "Traceback" not in done.stderr


def test_uvicorn_serving_the_factory_refuses_an_unmigrated_database(database_url: str) -> None:
    # `uvicorn --factory service.api.app:create_app` bypasses `rok serve`; the
    # app itself must refuse rather than answer every request with a 500
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "service.api.app:create_app",
            "--port",
            str(free_port()),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "ROK_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode != 0
    assert "has no rok schema" in done.stderr
    assert "rok db upgrade" in done.stderr
    assert table_names(database_url) == set()


def test_serve_refusing_a_missing_sqlite_file_does_not_create_it(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"

    assert rok("serve", ROK_DATABASE_URL=f"sqlite:///{path}").returncode == 2

    assert not path.exists()


def test_serve_on_a_migrated_database_answers(migrated_url: str) -> None:
    with running_server(migrated_url) as server, server.client() as client:
        assert client.get("/healthz").status_code == 200


def serve_until_healthy(database_url: str, *flags: str) -> tuple[bool, str]:
    """`rok serve --migrate` plus `flags` until /healthz answers; (healthy, its log)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--migrate", "--port", str(port), *flags],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "ROK_DATABASE_URL": database_url},
        stdout=subprocess.PIPE,  # uvicorn's access log goes to stdout, the rest to stderr
        stderr=subprocess.STDOUT,
    )
    try:
        healthy = wait_for_health(f"http://127.0.0.1:{port}/healthz", server)
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=30)
    return healthy, log.decode(errors="replace")


def test_serve_migrate_upgrades_an_empty_database_then_serves(database_url: str) -> None:
    # what `make run` and the Docker image do
    healthy, log = serve_until_healthy(database_url)

    assert healthy, log
    assert migrations.current_revision(database_url) == migrations.head_revision()
    # one access-log line per request by default (JSON: the server's output is not a terminal)
    assert '\\"GET /healthz HTTP/1.1\\" 200' in log


def test_serve_without_the_access_log_logs_no_requests(database_url: str) -> None:
    healthy, log = serve_until_healthy(database_url, "--no-access-log")

    assert healthy, log
    assert "Application startup complete" in log
    assert "GET /healthz" not in log


def wait_for_health(url: str, server: subprocess.Popen[bytes], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        time.sleep(0.05)
    return False


def test_unknown_command_is_a_usage_error() -> None:
    done = rok("fly")

    assert done.returncode == 2
    assert "No such command 'fly'" in done.stderr


def commands(group: click.Group, path: str = "rok") -> Iterator[tuple[str, click.Command]]:
    """Every command under `group`, with the words that call it."""
    for name, command in group.commands.items():
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from commands(command, f"{path} {name}")


def test_every_command_and_option_says_what_it_is_for() -> None:
    undocumented = [
        f"{words} {param.opts[0]}" if isinstance(param, click.Option) else words
        for words, command in commands(rok_group)
        for param in [*command.params, None]
        if (param is None and not command.help)
        or (isinstance(param, click.Option) and not param.help)
    ]

    assert undocumented == []
    assert {words for words, _ in commands(rok_group)} >= {
        "rok serve", "rok db upgrade", "rok db current", "rok db check", "rok keys create",
        "rok keys list", "rok keys revoke", "rok verify", "rok worker", "rok demo", "rok bench",
        "rok runs ls", "rok runs show", "rok runs fail", "rok runs cancel", "rok runs export",
        "rok runs prune",
    }  # fmt: skip


def test_rok_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from service import __version__
    from service.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"rok {__version__}"
