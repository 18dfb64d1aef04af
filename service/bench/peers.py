"""`rok bench --peers`: a Celery-on-Redis no-op task loop, measured beside W2 in one run.

Issue 13 compares rok with its peers on this machine; a figure from another
day says little about today's load, so the peer runs in the same bench, in
each W2 repeat right after rok's own windows, at the same concurrency:

- one Celery worker process (`service.bench.peer_worker`), started with the
  bench's lifeline (service.bench.children) so it never outlives the bench,
  with `--concurrency` = W2's pool concurrency and the **threads** pool. rok's
  WorkerPool is one process running that many runs at once; the threads pool
  is Celery's same shape (one process, N slots), and its whole worker is one
  process the lifeline covers. Prefork, Celery's default, is N+1 processes on
  two cores passing each task over a pipe: slower here for a no-op task
  (measured in one session: 151 against 236 tasks/s), so threads is the peer
  at its best, not a straw man;
- the submitter, in the bench's process, sends as many no-op tasks as W2's
  throughput window has runs, one after another, then waits for all their
  results (`ResultSet.join_native`); the clock runs from the first send until
  every result is back. Celery records the result only; rok records a run's
  whole lifecycle and its evidence, which is what the ratio prices.

Broker and results live in one Redis (`--redis-url`, default the local one),
every key under a prefix of this run's own, all deleted when the peer stops.
Celery and redis-py come with the `bench` extra, never with the service.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from types import TracebackType
from typing import IO, Any

from service.bench.children import end_group, lifeline

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
INSTALL_HINT = "pip install 'rok[bench]'"
READY_TIMEOUT_S = 60.0
RESULTS_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 15.0
WARMUP_TASKS = 20
POOL = "threads"


class PeerUnavailable(RuntimeError):
    """--peers cannot run: Celery or redis-py missing, or Redis not answering."""


def check_available(redis_url: str) -> None:
    """Before any workload runs: the packages are there and Redis answers."""
    missing = [name for name in ("celery", "redis") if importlib.util.find_spec(name) is None]
    if missing:
        raise PeerUnavailable(
            f"rok bench --peers needs {' and '.join(missing)} (the bench extra): {INSTALL_HINT}"
        )
    import redis

    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        raise PeerUnavailable(
            f"rok bench --peers: Redis does not answer at {redis_url} ({exc}); "
            "start it or pass --redis-url"
        ) from exc


class CeleryPeer:
    """The worker process and a client app, from `start()` to `stop()` (or a with block)."""

    def __init__(self, redis_url: str, concurrency: int) -> None:
        self.redis_url = redis_url
        self.concurrency = concurrency
        self.key_prefix = f"rok-bench-{uuid.uuid4().hex[:12]}:"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._app: Any = None

    def __enter__(self) -> CeleryPeer:
        self.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        from service.bench.peer_worker import create_celery

        self._app = create_celery(self.redis_url, self.key_prefix)
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives until stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROK_", "RAC_"))}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.bench.peer_worker",
                self.redis_url,
                self.key_prefix,
                str(self.concurrency),
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lifeline(),
        )
        try:
            self._warm_up()
        except BaseException:
            self.stop()
            raise

    def _warm_up(self) -> None:
        """Until the worker answers (its first result), then a few more unrecorded."""
        first = self._send()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not first.ready():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the Celery worker exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Celery worker did not answer in {READY_TIMEOUT_S}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self._join([self._send() for _ in range(WARMUP_TASKS)])

    def _send(self) -> Any:
        from service.bench.peer_worker import NOOP

        return self._app.send_task(NOOP)

    def _join(self, results: list[Any]) -> None:
        from celery.result import ResultSet

        ResultSet(results).join_native(timeout=RESULTS_TIMEOUT_S)

    def measure(self, tasks: int) -> float:
        """Tasks per second: from the first send until every result is back."""
        started = time.perf_counter()
        self._join([self._send() for _ in range(tasks)])
        elapsed = time.perf_counter() - started
        return tasks / elapsed if elapsed > 0 else math.nan

    def log_tail(self, limit: int = 4000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-limit:]

    def stop(self) -> None:
        """The worker ends (SIGTERM, then SIGKILL), the client closes, every key goes."""
        process, self.process = self.process, None
        try:
            if process is not None:
                end_group(process, STOP_TIMEOUT_S)
        finally:
            if self._app is not None:
                self._app.close()
                self._app = None
            self.delete_keys()
            if self._log is not None:
                self._log.close()
                self._log = None

    def delete_keys(self) -> int:
        """Delete every key under this peer's prefix; how many there were."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(match=f"{self.key_prefix}*", count=1000))
            for first in range(0, len(keys), 1000):
                client.unlink(*keys[first : first + 1000])
            return len(keys)
        finally:
            client.close()

    def keys_left(self) -> int:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            return sum(1 for _ in client.scan_iter(match=f"{self.key_prefix}*", count=1000))
        finally:
            client.close()
