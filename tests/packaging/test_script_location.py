"""Where rok finds its migration scripts: beside the package, else in the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.store import migrations
from service.store.migrations import MigrationsNotFound
from tests.packaging.installed import REPO_ROOT


def test_a_checkout_uses_its_own_alembic_folder() -> None:
    # the editable install's `service` is the checkout's: no copy beside it
    assert migrations.script_location() == REPO_ROOT / "alembic"


def test_without_scripts_anywhere_the_error_names_both_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrations, "REPO_ROOT", tmp_path)

    with pytest.raises(MigrationsNotFound) as missing:
        migrations.head_revision()

    message = str(missing.value)
    assert str(tmp_path / "alembic") in message
    assert str(REPO_ROOT / "service" / "_alembic") in message
    assert "reinstall rok from its wheel" in message
