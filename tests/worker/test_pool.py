"""WorkerPool behaviour that needs no service: validation, stopping while the service is down."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from service.worker.pool import WorkerPool


def unreachable_url() -> str:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_pool_needs_handlers_and_a_positive_concurrency() -> None:
    with pytest.raises(ValueError, match="at least one handler"):
        WorkerPool("http://x", {})
    with pytest.raises(ValueError, match="concurrency"):
        WorkerPool("http://x", {"a": lambda ctx: None}, concurrency=0)


def test_a_pool_stops_even_while_its_service_is_unreachable() -> None:
    pool = WorkerPool(
        unreachable_url(), {"job": lambda ctx: None}, concurrency=3, claim_wait_ms=100
    )
    thread = threading.Thread(target=pool.run, daemon=True)
    thread.start()
    assert pool._started.wait(10)
    for _ in range(500):  # until the pool is claiming (and failing to connect)
        if pool._claim is not None:
            break
        time.sleep(0.01)
    time.sleep(0.2)
    pool.stop(drain_timeout_s=0.1)
    thread.join(timeout=30)
    assert not thread.is_alive(), "claims retrying against a dead service were abandoned"
    assert pool.handled == 0


def test_stop_before_the_pool_started_is_honoured() -> None:
    pool = WorkerPool(unreachable_url(), {"job": lambda ctx: None}, claim_wait_ms=100)
    pool.stop(drain_timeout_s=0)
    pool.run(timeout_s=30)  # returns: the early stop was remembered
    assert pool.handled == 0


def test_rok_enabled_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROK_ENABLED", "false")
    assert WorkerPool("http://x", {"a": lambda ctx: None}).settings.rok_enabled is False
    monkeypatch.setenv("ROK_ENABLED", "true")
    assert WorkerPool("http://x", {"a": lambda ctx: None}).settings.rok_enabled is True
    assert (
        WorkerPool("http://x", {"a": lambda ctx: None}, rok_enabled=False).settings.rok_enabled
        is False
    )
