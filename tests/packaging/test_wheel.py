"""`pip install rok-*.whl` anywhere: the installed package migrates and serves on its own.

No checkout is reachable from the installed rok: it runs from a directory
outside the checkout, without PYTHONPATH, from a virtualenv holding the wheel
(tests/packaging/installed.py).
"""

from __future__ import annotations

import subprocess
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import service
from tests.packaging.installed import REPO_ROOT, InstalledRok
from tests.support.schemas import table_names
from tests.support.server import free_port

MIGRATIONS = REPO_ROOT / "alembic" / "versions"


def committed_files(folder: str) -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", folder], cwd=REPO_ROOT, capture_output=True, check=True
    )
    return {name for name in listed.stdout.decode().split("\0") if name}


def test_the_wheel_carries_every_migration_and_the_one_version(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_name,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(archive.read(metadata_name).decode())

    # every file in alembic/versions, without a list to keep up to date
    migrations = {f"service/_alembic/versions/{p.name}" for p in MIGRATIONS.glob("*.py")}
    assert len(migrations) >= 4
    assert migrations <= names
    assert "service/_alembic/env.py" in names
    # every file of the package ships, data (templates, policies) included, with no list to keep
    assert committed_files("service") <= names
    assert metadata["Version"] == service.__version__
    assert wheel.name == f"rok-{service.__version__}-py3-none-any.whl"
    assert not any(n.startswith(("tests/", "alembic/")) or "__pycache__" in n for n in names)


def test_the_installed_rok_runs_from_the_wheel_not_the_checkout(installed: InstalledRok) -> None:
    assert not installed.home.is_relative_to(REPO_ROOT)

    package = Path(installed.python("import service; print(service.__file__)"))
    scripts = Path(
        installed.python("import service.store.migrations as m; print(m.script_location())")
    )
    version = installed.python("import service; print(service.__version__)")

    assert package.is_relative_to(installed.venv), package
    assert scripts == package.parent / "_alembic"
    assert version == service.__version__


def test_the_installed_rok_migrates_and_serves_with_keys(
    installed: InstalledRok, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'rok.db'}"

    upgraded = installed.rok("db", "upgrade", "--url", url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded from nothing to" in upgraded.stdout
    assert "alembic_version" in table_names(url)
    created = installed.rok(
        "keys", "create", "--tenant", "acme", "--scope", "runs:read", env={"ROK_DATABASE_URL": url}
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]

    port = free_port()
    serve = [str(installed.bin / "rok"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    env = {"ROK_DATABASE_URL": url, "ROK_AUTH": "required"}
    with installed.serving(serve, port, env) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/runs").status_code == 401
        runs = client.get("/runs", headers={"Authorization": f"Bearer {key}"})
        assert runs.status_code == 200, runs.text
