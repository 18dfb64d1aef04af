"""A parent for test_orphans: starts children as rok does, reports them, waits to be killed.

    python -m tests.crash.parent KIND DATABASE_URL PIDS_FILE

KIND is `bench-server` (service.bench.server, what `rok bench` starts) or
`harness` (a tests.support.server server and a tests.e2e.harness worker, what
the e2e and crash tests start). The children's pids are written to PIDS_FILE
as JSON (written whole, then renamed), then the parent sleeps until the test
kills it with SIGKILL: no `finally` of this process runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from service.bench.server import ServerProcess as BenchServer
from service.bench.server import server_env
from tests.e2e.harness import start_worker_process
from tests.support.server import ServerProcess as TestServer

SLEEP_S = 600.0  # far longer than the test waits: the test kills this process first


def start_children(kind: str, database_url: str) -> list[int]:
    if kind == "bench-server":
        bench = BenchServer("service", server_env(database_url))
        bench.start()
        return [bench.pid]
    if kind == "harness":
        server = TestServer(database_url)
        server.start()
        worker = start_worker_process(server.base_url, "tests.e2e.apps:handlers")
        return [server.pid, worker.pid]
    raise SystemExit(f"unknown kind {kind!r}")


def main(argv: list[str]) -> None:
    kind, database_url, pids_file = argv
    pids = start_children(kind, database_url)
    written = Path(f"{pids_file}.tmp")
    written.write_text(json.dumps(pids))
    os.replace(written, pids_file)
    time.sleep(SLEEP_S)


if __name__ == "__main__":
    main(sys.argv[1:])
