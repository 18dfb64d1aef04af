"""`rok bench --peers`: the Celery-on-Redis loop runs, reports, and leaves nothing behind.

The loop itself on a few tasks (not the whole W2: its servers are what makes
the quick bench slow), the figures W2 adds from it, and the refusals when the
bench extra or Redis is missing. Redis and Celery are required where CI runs
(CI=true or ROK_REQUIRE_REDIS=1): there a missing one fails, never skips.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.bench import peers
from service.bench.children import lifeline
from service.bench.context import Context
from service.bench.databases import DEFAULT_POSTGRES_URL
from service.bench.figures import Figures
from service.bench.plan import QUICK
from service.bench.runner import main
from service.bench.workers import measure_peer

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("ROK_BENCH_REDIS_URL", peers.DEFAULT_REDIS_URL)
TASKS = 30
GONE_WAIT_S = 30.0  # a bound for a loaded machine; the wait polls for the outcome


def required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("ROK_REQUIRE_REDIS") == "1"


@pytest.fixture(scope="module")
def redis_url() -> str:
    """The peer's Redis, once Celery, redis-py and the server are all there."""
    try:
        peers.check_available(REDIS_URL)
    except peers.PeerUnavailable as exc:
        if required():
            pytest.fail(f"--peers cannot run where CI runs: {exc}")
        pytest.skip(str(exc))
    return REDIS_URL


@pytest.fixture(scope="module")
def peer(redis_url: str) -> Iterator[peers.CeleryPeer]:
    with peers.CeleryPeer(redis_url, concurrency=2) as started:
        yield started


def test_the_loop_measures_tasks_per_second(peer: peers.CeleryPeer) -> None:
    rate = peer.measure(TASKS)
    assert math.isfinite(rate) and rate > 0


def test_w2_reports_the_peer_and_the_ratio(peer: peers.CeleryPeer) -> None:
    figures = Figures()
    context = Context("sqlite", QUICK, figures, DEFAULT_POSTGRES_URL)
    governed = 50.0  # what W2's governed window measured, given here
    measure_peer(context, peer, governed)
    celery = figures.get("sqlite.celery.runs_per_s")
    ratio = figures.get("sqlite.w2.ratio_celery")
    assert celery is not None and ratio is not None
    assert celery.median > 0
    assert ratio.median == pytest.approx(governed / celery.median)


def test_stopping_ends_the_worker_and_deletes_every_key(redis_url: str) -> None:
    peer = peers.CeleryPeer(redis_url, concurrency=1)
    peer.start()
    process = peer.process
    assert process is not None
    peer.measure(5)
    assert peer.keys_left() > 0
    peer.stop()
    assert process.poll() is not None
    assert peer.keys_left() == 0


PARENT = """
import sys, time
from service.bench.peers import CeleryPeer
peer = CeleryPeer(sys.argv[1], concurrency=1)
peer.start()
print(peer.process.pid, peer.key_prefix, flush=True)
time.sleep(600)
"""


def test_the_worker_dies_with_a_bench_killed_by_sigkill(redis_url: str) -> None:
    """No `finally` runs in a SIGKILLed bench: the lifeline takes the worker along."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, redis_url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=lifeline(),
    )
    assert parent.stdout is not None
    with parent.stdout:
        pid_text, prefix = parent.stdout.readline().decode().split()
    worker = int(pid_text)
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + GONE_WAIT_S
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), "the Celery worker outlived its killed bench"
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)
        leftover = peers.CeleryPeer(redis_url, concurrency=1)
        leftover.key_prefix = prefix  # what the killed parent could not delete
        leftover.delete_keys()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_without_celery_the_bench_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec

    def without_celery(name: str, *args: object) -> object:
        return None if name == "celery" else real(name)

    monkeypatch.setattr(importlib.util, "find_spec", without_celery)
    code = main(["--quick", "--peers", "--out", str(tmp_path)])
    assert code == 2
    assert "pip install 'rok[bench]'" in capsys.readouterr().err
    assert not (tmp_path / "bench.json").exists()  # refused before measuring anything


def test_without_redis_the_bench_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = "redis://127.0.0.1:1/0"  # port 1: nothing listens there
    code = main(["--quick", "--peers", "--redis-url", nowhere, "--out", str(tmp_path)])
    assert code == 2
    assert f"Redis does not answer at {nowhere}" in capsys.readouterr().err


def test_celery_and_redis_come_with_the_bench_extra_only() -> None:
    """The service never depends on the peer; `make venv` (dev) brings it for the tests."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=;\[ ]", d, maxsplit=1)[0] for d in project["dependencies"]}
    assert not names & {"celery", "redis"}
    bench = {
        re.split(r"[<>=;\[ ]", d, maxsplit=1)[0] for d in project["optional-dependencies"]["bench"]
    }
    assert bench == {"celery", "redis"}
    assert "rok[bench]" in project["optional-dependencies"]["dev"]
