"""GET /metrics: what rok did, as Prometheus counters, histograms and one database gauge.

Every app has its own CollectorRegistry (never prometheus-client's global
one), so tests and several apps in one process do not count into each other.

With several replicas, each replica is scraped: counters and histograms
count what *this process* did (Prometheus sums them, `sum by (to_phase)
(rate(rok_run_transitions_total[5m]))`), while `rok_runs_by_phase` is read
from the database at scrape time, so every replica reports the same truth
and a dashboard takes `max` of it, never `sum`.

No label holds a run id, a tenant id, a worker id or a raw path: every label
takes its values from a fixed set (phases, verdicts, statuses, outcomes,
route templates, HTTP methods and status codes), so the number of series
stays bounded whatever the traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from service import __version__
from service.api.observability.context import current_request
from service.api.observability.phase_counts import LivePhaseCollector
from service.authority import Authority
from service.model.audit import ReconciliationStatus
from service.model.phases import VALID_TRANSITIONS, PhaseTransition
from service.store.observers import Committed, StoreObserver

# seconds: from a fast check on one machine to the 24 h a run may last
WAIT_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 86400)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# a `*_created` timestamp beside every counter doubles the series and tells nobody anything
disable_created_metrics()  # type: ignore[no-untyped-call]
SWEEP_ACTIONS = (
    "released",
    "failed_worker_lost",
    "failed_stale",
    "failed_unstarted",
    "failed_approval_expired",
    "failed_cancelled",
)
WEBHOOK_OUTCOMES = ("delivered", "failed")


class Metrics(StoreObserver):
    """One app's metrics; added to its authority's store observers by the lifespan."""

    def __init__(self, authority: Callable[[], Authority | None], backend: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Gauge("rok_info", "This rok process.", ["version", "backend"], registry=r).labels(
            __version__, backend
        ).set(1)
        self.runs_created = Counter(
            "rok_runs_created", "Runs created (an idempotent replay is not counted).", registry=r
        )
        self.transitions = Counter(
            "rok_run_transitions",
            "History entries written: moves between phases, and attempt entries (from = to).",
            ["from_phase", "to_phase"],
            registry=r,
        )
        self.governance_checks = Counter(
            "rok_governance_checks", "Governance verdicts recorded.", ["verdict"], registry=r
        )
        self.reconciliations = Counter(
            "rok_reconciliations",
            "Reconciliations recorded by governance checks, by status.",
            ["status"],
            registry=r,
        )
        self.evidence_lag = Histogram(
            "rok_evidence_lag_seconds",
            "From the end of execution to the last domain ack a governance check saw "
            "(0 when every ack came before the end).",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.check_wait = Histogram(
            "rok_governance_wait_seconds",
            "How long a governance check waited for the domains' acks before judging.",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.requests = Histogram(
            "rok_http_request_duration_seconds",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.claims = Counter(
            "rok_claims",
            "Claims: a run leased (hit) or none waiting (empty).",
            ["result"],
            registry=r,
        )
        self.lease_expiries = Counter(
            "rok_lease_expiries",
            "Leases the sweeper found expired (the run released or failed: worker lost).",
            registry=r,
        )
        self.sweeper_actions = Counter(
            "rok_sweeper_actions", "What the sweeper did to runs.", ["action"], registry=r
        )
        self.webhook_deliveries = Counter(
            "rok_webhook_deliveries",
            "Webhook delivery attempts by outcome.",
            ["outcome"],
            registry=r,
        )
        r.register(LivePhaseCollector(authority))
        self._init_series()

    def _init_series(self) -> None:
        """Every series a fixed label set allows starts at 0 (rate() needs a first sample),
        and the hot ones are bound once: a move costs a dict lookup and an increment."""
        self._moves = {
            (a, b): self.transitions.labels(a.value, b.value)
            for a, targets in VALID_TRANSITIONS.items()
            for b in targets
        }
        self._verdicts = {v: self.governance_checks.labels(v) for v in ("passed", "failed")}
        for status in ReconciliationStatus:
            self.reconciliations.labels(status.value)
        self._claim_hit, self._claim_empty = self.claims.labels("hit"), self.claims.labels("empty")
        self._sweeps = {a: self.sweeper_actions.labels(a) for a in SWEEP_ACTIONS}
        self._webhooks = {o: self.webhook_deliveries.labels(o) for o in WEBHOOK_OUTCOMES}
        self._requests: dict[tuple[str, str, int], Histogram] = {}

    def exposition(self) -> bytes:
        """The Prometheus text of this registry (reads the database: call it off the loop)."""
        return generate_latest(self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method if method in METHODS else "OTHER", route, status)
        bound = self._requests.get(key)
        if bound is None:  # bounded: methods x route templates x status codes
            bound = self._requests[key] = self.requests.labels(key[0], route, str(status))
        bound.observe(seconds)

    # -- StoreObserver: called after each commit --------------------------------

    def run_created(self, run_id: str, tenant_id: str | None) -> None:
        self.runs_created.inc()
        _name_run(run_id, tenant_id)

    def committed(self, change: Committed) -> None:
        for move in change.moves:
            self._move(move).inc()
        verdict = change.verdict
        if verdict is not None:
            self._verdicts["passed" if verdict.passed else "failed"].inc()
            self.reconciliations.labels(verdict.status).inc()
            if verdict.evidence_lag_s is not None:
                self.evidence_lag.observe(verdict.evidence_lag_s)
        _name_run(change.run_id, change.tenant_id)

    def _move(self, move: PhaseTransition) -> Counter:
        pair = (move.from_phase, move.to_phase)
        bound = self._moves.get(pair)
        if bound is None:  # an attempt entry (from = to): 5 live phases at most
            bound = self._moves[pair] = self.transitions.labels(*(p.value for p in pair))
        return bound

    def claimed(self, run_id: str | None, tenant_id: str | None) -> None:
        if run_id is None:
            self._claim_empty.inc()
            return
        self._claim_hit.inc()
        _name_run(run_id, tenant_id)

    def check_waited(self, seconds: float) -> None:
        self.check_wait.observe(seconds)

    def swept(self, actions: Mapping[str, int]) -> None:
        self.lease_expiries.inc(actions.get("released", 0) + actions.get("failed_worker_lost", 0))
        for action, count in actions.items():
            if count and action in self._sweeps:
                self._sweeps[action].inc(count)

    def webhook_delivered(self, outcome: str) -> None:
        bound = self._webhooks.get(outcome)
        if bound is None:
            raise ValueError(f"webhook outcome {outcome!r} is not one of {WEBHOOK_OUTCOMES}")
        bound.inc()


def _name_run(run_id: str, tenant_id: str | None) -> None:
    """Put the run a request acted on in its log lines (a POST /runs has no run in its path)."""
    context = current_request()
    if context is not None:
        context.about_run(run_id, tenant_id)
