"""`rok runs …` as an operator runs it: child processes against a real server process.

`rok(...)` runs `python -m service ARGS` from outside the repository,
`rok_here(...)` the same entry point in this process (seconds quicker each);
`served` is a migrated SQLite database with a server on it (ROK_AUTH=off),
shared by a module's tests, each of which makes its own runs. Runs with a
rich history are made in-process on the same database (tests.support.chains).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from unittest import mock

import pytest
from sqlalchemy import create_engine, update
from sqlalchemy.pool import NullPool

from service.authority import Authority
from service.cli import main
from service.store.migrations import upgrade
from service.store.tables import runs
from tests.support.chains import KEY, sealed_authority
from tests.support.databases import sqlite_url
from tests.support.server import ServerProcess, running_server

REPO_ROOT = Path(__file__).resolve().parents[2]
# the server seals with the key the in-process authority uses
SERVER_ENV = {"ROK_HISTORY_KEY": KEY.decode()}


def rok(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`rok ARGS` as a child process; ROK_URL, ROK_API_KEY and ROK_DATABASE_URL only from `env`."""
    base = {k: v for k, v in os.environ.items() if k not in ("ROK_URL", "ROK_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**base, "PYTHONPATH": str(REPO_ROOT), **env},
        cwd=Path.home() if Path.home().is_dir() else "/",
        capture_output=True,
        text=True,
        timeout=120,
    )


def rok_here(*args: str) -> subprocess.CompletedProcess[str]:
    """`rok ARGS` through the command's own entry point, in this process (no ROK_URL or
    ROK_API_KEY from the environment: the arguments say where and with which key)."""
    out, err = io.StringIO(), io.StringIO()
    unset = {name: "" for name in ("ROK_URL", "ROK_API_KEY")}  # click ignores empty variables
    with (
        mock.patch.dict(os.environ, unset),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(list(args))
    return subprocess.CompletedProcess(["rok", *args], code, out.getvalue(), err.getvalue())


@dataclass
class Served:
    """A database, a server on it and an in-process authority on the same database."""

    database_url: str
    server: ServerProcess
    authority: Authority

    @property
    def url(self) -> str:
        return self.server.base_url

    def rok(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`rok ARGS --url <this server>`, run in this process (quicker than a child)."""
        return rok_here(*args, "--url", self.url)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    url = sqlite_url(tmp_path_factory.mktemp("served"))
    upgrade(url)
    authority = sealed_authority(url)
    try:
        with running_server(url, SERVER_ENV) as server:
            yield Served(url, server, authority)
    finally:
        authority.close()


def age(database_url: str, run_ids: list[str], finished_at: datetime) -> None:
    """Make runs look finished at `finished_at` (their terminal move's time)."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id.in_(run_ids)).values(updated_at=finished_at))
    finally:
        engine.dispose()
