"""CPU time from /proc: one process, a process group, a database's backends, the machine.

A bench server runs in a session of its own, so its process group is the
server: one uvicorn process, or with `workers > 1` uvicorn's supervisor and
its worker processes. Summing the group counts every worker's CPU, which one
pid's /proc/<pid>/stat would not (a child's time reaches its parent's
cutime only once the child has exited and been reaped).

PostgreSQL's CPU is the backends serving one database (pg_stat_activity),
read the same way: the part of the machine's two cores the database took
while the service was measured. /proc/<pid>/stat is readable for any user's
process, so the bench needs no rights on the PostgreSQL server's processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# fields of /proc/<pid>/stat after the ")" that closes the command name
_PPID, _PGRP, _UTIME, _STIME = 1, 2, 11, 12


def _stat(pid: int) -> list[str] | None:
    """The fields after the command name (which may hold spaces); None once gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def _seconds(fields: list[str]) -> float:
    return (int(fields[_UTIME]) + int(fields[_STIME])) / _CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` (all its threads) so far; 0.0 once it is gone."""
    fields = _stat(pid)
    return 0.0 if fields is None else _seconds(fields)


def _all_pids() -> Iterable[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def group_members(pgid: int) -> list[int]:
    """The live processes of process group `pgid`."""
    members = []
    for pid in _all_pids():
        fields = _stat(pid)
        if fields is not None and int(fields[_PGRP]) == pgid:
            members.append(pid)
    return members


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    found = []
    for candidate in _all_pids():
        fields = _stat(candidate)
        if fields is not None and int(fields[_PPID]) == pid:
            found.append(candidate)
    return sorted(found)


def command_line(pid: int) -> str:
    """The process's arguments joined by spaces ("" once it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def group_cpu_seconds(pgid: int) -> float:
    """CPU time of every live process in group `pgid` (a server and its workers)."""
    return sum(process_cpu_seconds(pid) for pid in group_members(pgid))


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


class DatabaseBackends:
    """CPU of the PostgreSQL backends connected to one database.

    `cpu_seconds()` sums the backends alive now; a backend that ends between
    two readings takes its time with it, so the service's pool (which keeps
    its connections) is what this measures well.
    """

    def __init__(self, database_url: str) -> None:
        self.database = make_url(database_url).database
        self._engine = create_engine(database_url, poolclass=NullPool)

    def pids(self) -> list[int]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = :database AND pid <> pg_backend_pid()"
                ),
                {"database": self.database},
            )
            return [int(row.pid) for row in rows]

    def cpu_seconds(self) -> dict[int, float]:
        """CPU time per backend pid, for the backends connected now."""
        return {pid: process_cpu_seconds(pid) for pid in self.pids()}

    def close(self) -> None:
        self._engine.dispose()


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings by the processes present in both."""
    return sum(after[pid] - before[pid] for pid in after.keys() & before.keys())
