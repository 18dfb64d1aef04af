"""The Celery side of `rok bench --peers`: the app, its no-op task, its worker process.

    python -m service.bench.peer_worker REDIS_URL KEY_PREFIX CONCURRENCY

Broker and result backend are the same Redis, every key under KEY_PREFIX (kombu's
and the result backend's `global_keyprefix`), so the peer shares a Redis with
anything else without touching its keys, and the bench deletes exactly its own.
Needs the `bench` extra (`pip install 'rok[bench]'`); nothing in the service imports it.
"""

from __future__ import annotations

import sys
from typing import Any

from celery import Celery

QUEUE = "rok-bench-peer"
NOOP = "rok_bench.noop"
RESULT_TTL_S = 3600  # the bench deletes the keys when it ends; this bounds a bench killed first


def create_celery(redis_url: str, key_prefix: str) -> Celery:
    """The peer's app with its one task, `rok_bench.noop`, which returns None."""
    app = Celery("rok_bench_peer", broker=redis_url, backend=redis_url)
    app.conf.update(
        broker_transport_options={"global_keyprefix": key_prefix},
        result_backend_transport_options={"global_keyprefix": key_prefix},
        task_default_queue=QUEUE,
        result_expires=RESULT_TTL_S,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name=NOOP)  # type: ignore[untyped-decorator]  # Celery is untyped
    def noop() -> None:
        return None

    return app


def worker_arguments(concurrency: int) -> list[str]:
    """A worker that does only tasks: no gossip, mingle or heartbeats between workers
    (there is one), the threads pool (see service.bench.peers for why)."""
    return [
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--queues={QUEUE}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel=WARNING",
    ]


def main(argv: list[str]) -> None:
    redis_url, key_prefix, concurrency = argv
    app: Any = create_celery(redis_url, key_prefix)
    app.worker_main(worker_arguments(int(concurrency)))


if __name__ == "__main__":
    main(sys.argv[1:])
