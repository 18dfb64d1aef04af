"""What a bench run measures and for how long: the full plan and the --quick one.

Every number here is a setting of the measurement, never a result; the
report prints the plan it ran with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Plan:
    repeats: int = 3
    # W1 and the limits: each point is a warm-up (not recorded), then a timed window
    warmup_s: float = 1.0
    duration_s: float = 5.0
    client_levels: tuple[int, ...] = (1, 8, 32)
    # W2: pool concurrency, runs per throughput window, trickle rate and length.
    # 400 runs made the ROK_ENABLED=false window under 3 s: its ratio swung
    # 0.29..0.62 between identical runs; 1,000 keeps each window past 5 s.
    pool_concurrency: int = 8
    w2_runs: int = 1000
    trickle_rate_per_s: float = 20.0
    trickle_runs: int = 200
    # W2: runs submitted one at a time, each after the previous ended (an idle pool)
    idle_runs: int = 50
    # W3: finished runs in the database, claims timed per level, W1 clients
    scale_levels: tuple[int, ...] = (0, 100_000, 1_000_000)
    claims_per_level: int = 100
    scale_clients: int = 8
    # W4: checks waiting at once, the window their acks arrive in
    waiting_checks: int = 1000
    ack_spread_s: float = 5.0
    settle_s: float = 2.0
    # W5: lifecycles per batch, two batches; run once (see memory.py)
    memory_lifecycles: int = 10_000
    memory_clients: int = 8
    memory_repeats: int = 1
    # W6: waiting runs (over 50 tenants with limits set) when claims are timed again
    fair_waiting: int = 100_000
    # W7: W1's client levels against one process and two (issue 13: 8 and 32)
    scale_out_clients: tuple[int, ...] = (8, 32)
    workloads: tuple[str, ...] = field(default=("W1", "W2", "W3", "W4", "W5", "W6", "W7"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


FULL = Plan()

# About a minute on two cores: every workload once, W3 to 10,000 runs and W5
# at 300 lifecycles per batch (at ~25 lifecycles/s, 2 x 1,000 alone would
# take over a minute).
QUICK = Plan(
    repeats=1,
    warmup_s=0.2,
    duration_s=1.0,
    w2_runs=40,
    trickle_runs=20,
    idle_runs=10,
    scale_levels=(0, 10_000),
    claims_per_level=50,
    waiting_checks=100,
    ack_spread_s=1.0,
    settle_s=0.5,
    memory_lifecycles=300,
    fair_waiting=5_000,
)


def plan_for(quick: bool, repeats: int | None, workloads: tuple[str, ...] | None) -> Plan:
    plan = QUICK if quick else FULL
    if repeats is not None:
        plan = replace(plan, repeats=repeats)
    if workloads is not None:
        plan = replace(plan, workloads=workloads)
    return plan
