"""The wheel is built once and installed once per test session (tests/packaging/installed.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.installed import InstalledRok, build_wheel, install


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> InstalledRok:
    return install(wheel, tmp_path_factory.mktemp("installed"))
