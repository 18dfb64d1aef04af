"""`rok bench`: governed lifecycles per second, latency and scale, each against
the platform limit measured in the same run (issue 4; issue 13's targets).

Layout:
- runner.py     the CLI (`rok bench`, `python -m service.bench`) and the order of workloads
- server.py     a real service (or limits) process on a free port, its RSS and CPU
- launch.py     what that process runs: uvicorn with one fixed set of settings
- children.py   every process the bench starts ends with it (a lifeline, group signals)
- limits.py     the two platform limits as a tiny ASGI app on the same Database class
- load.py       the asyncio + httpx keep-alive load client and latency recorder
- lifecycle.py  one full lifecycle over REST, as a worker would drive it
- preload.py    bulk-loading finished runs straight into the tables (W3)
- throughput.py W1 and the limits; workers.py W2; scale.py W3; waiting.py W4; memory.py W5;
  fairness.py W6 (claims with 100,000 waiting runs over 50 tenants with limits);
  scaleout.py W7 (W1 against one service process and two, PostgreSQL)
- cpu.py        CPU time of a server's process group and of a database's backends
- figures.py    a measured figure, its repeats, its target; report.py bench.json + bench.md
- targets.py    which figures answer issue 13's numbered targets (bench.md opens with them)
- peers.py      --peers: a Celery-on-Redis loop beside W2; peer_worker.py its worker process
"""
