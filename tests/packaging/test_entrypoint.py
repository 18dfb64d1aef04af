"""The container's entrypoint (docker/entrypoint.sh), run as the image runs it.

No Docker daemon runs where these tests run, so the image itself is not built
here: the script runs with the wheel installed in a fresh virtualenv on PATH
(tests/packaging/installed.py), as in the image, and a SQLite file of the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.installed import REPO_ROOT, InstalledRok
from tests.support.server import free_port

ENTRYPOINT = str(REPO_ROOT / "docker" / "entrypoint.sh")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'rok.db'}"


def test_the_entrypoint_migrates_when_asked_and_serves_every_address_with_keys(
    installed: InstalledRok, url: str
) -> None:
    env = {"ROK_DATABASE_URL": url, "ROK_MIGRATE": "1"}
    # with a command, the entrypoint runs that rok command (after migrating)
    created = installed.run(
        [ENTRYPOINT, "keys", "create", "--tenant", "acme", "--scope", "runs:read"], env
    )
    assert created.returncode == 0, created.stderr
    assert "upgraded from nothing to" in created.stdout
    key = created.stdout.strip().splitlines()[-1]

    port = free_port()
    # options only: `rok serve` on 0.0.0.0 with them; ROK_AUTH is left unset, keys are the default
    with installed.serving([ENTRYPOINT, "--port", str(port)], port, env) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/runs").status_code == 401
        runs = client.get("/runs", headers={"Authorization": f"Bearer {key}"})
        assert runs.status_code == 200, runs.text
    log = (installed.home / f"server-{port}.log").read_text()
    assert "already at schema revision" in log
    assert f"0.0.0.0:{port}" in log


def test_without_rok_migrate_a_database_behind_the_code_is_refused(
    installed: InstalledRok, url: str
) -> None:
    done = installed.run([ENTRYPOINT, "--port", str(free_port())], {"ROK_DATABASE_URL": url})

    assert done.returncode == 2
    assert "has no rok schema" in done.stderr
    assert "rok db upgrade" in done.stderr


@pytest.mark.parametrize("value", ["yes", "true", " 1"])
def test_a_bad_rok_migrate_is_named_and_touches_nothing(
    installed: InstalledRok, url: str, value: str
) -> None:
    env = {"ROK_DATABASE_URL": url, "ROK_MIGRATE": value}

    done = installed.run([ENTRYPOINT, "db", "current"], env)

    assert done.returncode == 2
    assert f"ROK_MIGRATE must be 1 (upgrade the schema first) or 0, not '{value}'" in done.stderr
    assert not Path(url.removeprefix("sqlite:///")).exists()


def test_the_entrypoint_refuses_to_serve_without_keys(installed: InstalledRok, url: str) -> None:
    env = {"ROK_DATABASE_URL": url, "ROK_AUTH": "off"}

    done = installed.run([ENTRYPOINT, "--port", str(free_port())], env)

    assert done.returncode == 2
    assert "ROK_AUTH=off is served only on loopback, not on --host 0.0.0.0" in done.stderr
