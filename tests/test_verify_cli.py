"""`rok verify [--run ID]` as a real process, on both backends: 0 when every chain
holds, 1 naming each run whose history was edited, 2 when it cannot verify."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.authority import Authority
from tests.support.chains import KEY, OTHER_KEY, execute, lifecycle, sealed_authority

REPO_ROOT = Path(__file__).resolve().parents[1]


def rok_verify(
    url: str, *args: str, key: bytes | None = KEY, key_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`rok verify ARGS` on `url` with `key` in ROK_HISTORY_KEY (or only `key_file`)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "ROK_DATABASE_URL": url}
    env.pop("ROK_HISTORY_KEY", None)
    if key is not None:
        env["ROK_HISTORY_KEY"] = key.decode()
    if key_file is not None:
        env["ROK_HISTORY_KEY_FILE"] = str(key_file)
    return subprocess.run(
        [sys.executable, "-m", "service", "verify", *args],
        env=env,
        cwd=Path.home() if Path.home().is_dir() else "/",
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def runs(migrated_url: str) -> list[str]:
    """Three completed runs, sealed with KEY."""
    authority: Authority = sealed_authority(migrated_url)
    try:
        return [lifecycle(authority) for _ in range(3)]
    finally:
        authority.close()


def test_every_chain_holds(migrated_url: str, runs: list[str], tmp_path: Path) -> None:
    done = rok_verify(migrated_url)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "verified 3 runs: every history holds"
    (tmp_path / "history.key").write_text(KEY.decode() + "\n")
    from_file = rok_verify(migrated_url, key=None, key_file=tmp_path / "history.key")
    assert from_file.returncode == 0, from_file.stdout + from_file.stderr


def test_an_edited_reason_and_an_edited_result_name_their_runs_only(
    migrated_url: str, runs: list[str]
) -> None:
    moved, acked, untouched = runs
    execute(migrated_url, "UPDATE transitions SET reason = 'ok' WHERE run_id = :id", id=moved)
    execute(migrated_url, "UPDATE acks SET result_id = 'x' WHERE run_id = :id", id=acked)

    done = rok_verify(migrated_url)

    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert sorted(lines[:-1]) == sorted(
        [
            f"run {moved}: history broken at transition 1 (1 entry checked)",
            f"run {acked}: history broken at ack 3 (3 entries checked)",
        ]
    )
    assert lines[-1] == "verified 3 runs: 2 broken"
    assert untouched not in done.stdout

    one = rok_verify(migrated_url, "--run", untouched)
    assert (one.returncode, one.stdout.strip()) == (0, "verified 1 run: every history holds")
    assert rok_verify(migrated_url, "--run", moved).returncode == 1


def test_the_wrong_key_breaks_every_chain(migrated_url: str, runs: list[str]) -> None:
    done = rok_verify(migrated_url, key=OTHER_KEY)

    assert done.returncode == 1
    assert all(run_id in done.stdout for run_id in runs)


def test_without_a_key_or_with_an_unknown_run_it_exits_2(
    migrated_url: str, runs: list[str], tmp_path: Path
) -> None:
    keyless = rok_verify(migrated_url, key=None, key_file=tmp_path / "absent.key")
    assert keyless.returncode == 2
    assert "no history key" in keyless.stderr
    assert not (tmp_path / "absent.key").exists()

    unknown = rok_verify(migrated_url, "--run", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 2
    assert "00000000-0000-0000-0000-000000000000" in unknown.stderr
