"""`rok keys create|list|revoke` as an operator runs them: real processes, a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.config import Settings
from service.store.migrations import upgrade

ROOT = Path(__file__).resolve().parents[1]


def rok(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROK_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.fixture
def url(tmp_path: Path) -> str:
    database = f"sqlite:///{tmp_path / 'rok.db'}"
    upgrade(database)
    return database


def test_a_created_key_is_printed_once_and_works_until_revoked(url: str) -> None:
    made = rok(url, "keys", "create", "--tenant", "acme", "--scope", "runs:read", "--name", "ci")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("rok_") and len(key) > 60

    listed = rok(url, "keys", "list")
    assert listed.returncode == 0
    (line,) = listed.stdout.strip().splitlines()
    key_id = line.split()[0]
    assert key_id in key
    assert key not in listed.stdout  # the secret is never shown again
    assert "acme" in line and "runs:read" in line and "active" in line and "ci" in line

    with TestClient(create_app(Settings(database_url=url))) as client:
        headers = {"Authorization": f"Bearer {key}"}
        assert client.get("/runs", headers=headers).status_code == 200
        revoked = rok(url, "keys", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        assert client.get("/runs", headers=headers).status_code == 401
    assert "revoked" in rok(url, "keys", "list").stdout


def test_only_a_hash_of_the_key_is_stored(url: str, tmp_path: Path) -> None:
    key = rok(url, "keys", "create", "--tenant", "t", "--scope", "admin").stdout.splitlines()[-1]
    secret = key.split("_", 2)[2]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("rok.db*"))  # with the WAL
    assert secret.encode() not in stored


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["keys", "create", "--tenant", "t", "--scope", "root"], 2, "'root' is not a scope"),
        (["keys", "create", "--tenant", "t", "--scope", "acks:"], 2, "is not a scope"),
        (["keys", "revoke", "0123456789abcdef"], 1, "no API key with id"),
    ],
)
def test_bad_requests_say_what_is_wrong(url: str, args: list[str], code: int, says: str) -> None:
    done = rok(url, *args)
    assert done.returncode == code
    assert says in done.stdout + done.stderr
    assert rok(url, "keys", "list").stdout.strip() == ""
