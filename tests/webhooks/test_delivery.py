"""Alerts end to end on both backends: written with the move, delivered signed, retried."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from service.authority import Authority
from service.delivery import BACKOFF_FIRST_S, Deliverer, DeliveryReport, backoff_s
from service.kernel.kernel import create_rok
from service.model.phases import RunPhase
from service.store.outbox import Event, EventFilter, EventState, EventType, OutboxStore
from service.store.tables import events
from service.store.transaction import RunTransaction
from service.sweeper import Sweeper
from tests.support.authorities import checked_authority
from tests.support.runs import RunFactory
from tests.webhooks.receiver import SECRET, SECRET_KEY, Receiver


def all_events(authority: Authority, run_id: str | None = None) -> list[Event]:
    found, _ = OutboxStore(authority.database).list(EventFilter(run_id=run_id), 500, None)
    return sorted(found, key=lambda e: (e.created_at, e.type))


def test_a_failed_run_is_delivered_as_a_signed_run_failed(
    hooked: Authority, deliverer: Deliverer, receiver: Receiver
) -> None:
    run_id = RunFactory(hooked).create(tenant_id="acme", handler="job")
    hooked.kernel(run_id).fail("disk full")

    report = deliverer.tick(hooked.clock())

    [event] = all_events(hooked)
    assert report.delivered == [event.id]
    [delivery] = receiver.deliveries
    payload = delivery.verified()  # standardwebhooks accepts the signature
    assert payload["type"] == "run.failed"
    assert payload["data"]["run_id"] == run_id
    assert payload["data"]["tenant_id"] == "acme"
    assert payload["data"]["phase"] == "FAILED"
    assert payload["data"]["failed_in"] == "CREATED"
    assert payload["data"]["error"] == "disk full"
    assert payload["data"]["handler"] == "job"
    assert delivery.headers["webhook-id"] == event.id
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["webhook-signature"].startswith("v1,")
    assert delivery.body == event.body  # the stored bytes, as signed
    stored = OutboxStore(hooked.database).get(event.id)
    assert stored is not None and stored.state is EventState.DELIVERED
    assert stored.attempts == 1 and stored.delivered_at is not None
    assert stored.next_attempt_at is None and stored.last_error is None


def test_a_delivery_refused_once_is_retried_with_the_same_id_and_body(
    hooked: Authority, deliverer: Deliverer, receiver: Receiver
) -> None:
    receiver.statuses = [500]
    run_id = RunFactory(hooked).create()
    hooked.kernel(run_id).fail("boom")
    now = hooked.clock()

    first = deliverer.tick(now)

    [event] = all_events(hooked)
    assert first.retrying == [event.id]
    pending = OutboxStore(hooked.database).get(event.id)
    assert pending is not None and pending.state is EventState.PENDING
    assert pending.attempts == 1
    assert pending.last_error == "endpoint 1 answered HTTP 500"
    # no jitter drawn: half the first backoff
    assert pending.next_attempt_at == now + timedelta(seconds=BACKOFF_FIRST_S / 2)
    assert deliverer.tick(now + timedelta(seconds=1)) == DeliveryReport()  # not due yet

    second = deliverer.tick(pending.next_attempt_at)

    assert second.delivered == [event.id]
    refused, accepted = receiver.deliveries
    assert refused.headers["webhook-id"] == accepted.headers["webhook-id"] == event.id
    assert refused.body == accepted.body
    assert accepted.verified()["type"] == "run.failed"
    done = OutboxStore(hooked.database).get(event.id)
    assert done is not None and done.state is EventState.DELIVERED and done.attempts == 2


def test_an_event_is_given_up_after_the_last_attempt(
    hooked: Authority, deliverer: Deliverer, receiver: Receiver
) -> None:
    receiver.statuses = [503, 503, 503, 503]
    hooked.kernel(RunFactory(hooked).create()).fail("boom")
    now = hooked.clock()
    outbox = OutboxStore(hooked.database)

    reports = []
    for _ in range(3):  # ROK_WEBHOOK_MAX_ATTEMPTS=3 in the fixture
        reports.append(deliverer.tick(now))
        [event] = all_events(hooked)
        now = event.next_attempt_at or now

    [event] = all_events(hooked)
    assert [len(r.retrying) for r in reports] == [1, 1, 0]
    assert reports[-1].failed == [event.id]
    assert event.state is EventState.FAILED and event.attempts == 3
    assert event.next_attempt_at is None
    assert event.last_error == "endpoint 1 answered HTTP 503"
    assert len(receiver.deliveries) == 3
    assert deliverer.tick(now + timedelta(days=1)) == DeliveryReport()
    assert outbox.next_due() is None


def test_backoff_doubles_up_to_its_cap_with_jitter_in_its_upper_half() -> None:
    assert [backoff_s(n, lambda: 0.0) for n in (1, 2, 3)] == [2.5, 5.0, 10.0]
    assert [backoff_s(n, lambda: 1.0) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert backoff_s(30, lambda: 1.0) == backoff_s(12, lambda: 1.0) == 15 * 60.0


def test_the_sweeper_stale_verdict_is_alerted_as_run_stale(
    hooked: Authority, deliverer: Deliverer, receiver: Receiver
) -> None:
    run_id = RunFactory(hooked).create(run_timeout_ms=10)
    hooked.kernel(run_id).authorize("GRANTED")
    deadline = hooked.store.get(run_id).row.finalize_deadline
    assert deadline is not None

    swept_at = deadline + timedelta(milliseconds=1)
    Sweeper(hooked).tick(swept_at)
    deliverer.tick(swept_at)

    [stale] = receiver.of_type("run.stale")
    data = stale.verified()["data"]
    assert data["run_id"] == run_id and data["phase"] == "FAILED"
    assert data["stale_in"] == "AUTHORIZED"
    assert data["finalize_deadline"] == deadline.isoformat().replace("+00:00", "Z")
    assert data["reason"].startswith("stale: finalize_run deadline")
    assert data["incident_id"].startswith("inc-")
    # every FAILED end is a run.failed too, sent first
    assert [e.type for e in all_events(hooked, run_id)] == [
        EventType.RUN_FAILED,
        EventType.RUN_STALE,
    ]


def test_a_check_with_missing_evidence_is_alerted_as_governance_incomplete(
    hooked: Authority, deliverer: Deliverer, receiver: Receiver
) -> None:
    run_id = RunFactory(hooked).at(RunPhase.GOVERNANCE_CHECK)  # no domain acked

    outcome = hooked.kernel(run_id).record_governance_check()
    deliverer.tick(hooked.clock())

    assert not outcome.passed
    [incomplete] = receiver.of_type("governance.incomplete")
    data = incomplete.verified()["data"]
    assert data["run_id"] == run_id and data["phase"] == "GOVERNANCE_CHECK"
    assert data["status"] == "INCOMPLETE" and data["strict"] is False
    assert sorted(map(tuple, data["missing"])) == sorted(outcome.reconciliation.missing)
    assert data["failed"] == []
    # recorded once: a second check answers the verdict and alerts nothing more
    hooked.kernel(run_id).record_governance_check()
    assert len(all_events(hooked, run_id)) == 1


def test_a_passed_check_and_a_completed_run_alert_nothing(hooked: Authority) -> None:
    RunFactory(hooked).at(RunPhase.COMPLETED)
    assert all_events(hooked) == []


def test_a_move_that_rolls_back_leaves_no_event(
    hooked: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = RunFactory(hooked).create()

    def broken_ack(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk went away")

    # the finalize_run ack is written after the FAILED move and its run.failed
    monkeypatch.setattr(RunTransaction, "add_ack", broken_ack)
    with pytest.raises(RuntimeError, match="disk went away"):
        hooked.kernel(run_id).fail("boom")

    assert hooked.store.get(run_id).phase is RunPhase.CREATED
    assert all_events(hooked) == []
    with hooked.database.read() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 0


def test_the_event_commits_with_its_move(hooked: Authority) -> None:
    """Read on another connection inside the move: the event is not there before the commit."""
    run_id = RunFactory(hooked).create()
    seen_inside: list[int] = []
    with hooked.store.transaction(run_id, hooked.clock) as tx:
        tx.emit(EventType.RUN_FAILED, {})
        seen_inside.append(len(all_events(hooked)))  # a reader sees the last commit
    assert seen_inside == [0]
    assert len(all_events(hooked)) == 1


def test_two_deliverers_never_both_send_an_event(hooked: Authority, receiver: Receiver) -> None:
    for _ in range(5):
        hooked.kernel(RunFactory(hooked).create()).fail("boom")
    now = hooked.clock()
    deliverers = [Deliverer(hooked), Deliverer(hooked)]
    barrier = threading.Barrier(2)
    reports: list[DeliveryReport] = []

    def deliver(deliverer: Deliverer) -> None:
        barrier.wait()
        reports.append(deliverer.tick(now))

    threads = [threading.Thread(target=deliver, args=(d,)) for d in deliverers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for deliverer in deliverers:
        deliverer.close()

    sent = [d.headers["webhook-id"] for d in receiver.deliveries]
    assert sorted(sent) == sorted(e.id for e in all_events(hooked))  # each once
    assert sum(len(r.delivered) for r in reports) == 5
    assert all(e.state is EventState.DELIVERED and e.attempts == 1 for e in all_events(hooked))


def test_an_elected_deliverer_keeps_the_other_replicas_out(
    hooked: Authority, deliverer: Deliverer, receiver: Receiver
) -> None:
    hooked.kernel(RunFactory(hooked).create()).fail("boom")
    other = Deliverer(hooked)
    try:
        with other.outbox.elected() as elected:
            assert elected
            report = deliverer.tick(hooked.clock())
        if hooked.database.is_postgres:
            assert report.skipped and receiver.deliveries == []
        else:  # one process writes a SQLite file: it is always elected
            assert not report.skipped and len(receiver.deliveries) == 1
    finally:
        other.close()


def test_without_webhooks_no_event_is_recorded(migrated_url: str) -> None:
    with checked_authority(migrated_url) as authority:
        authority.kernel(RunFactory(authority).create()).fail("boom")
        assert all_events(authority) == []
        assert Deliverer(authority).tick(authority.clock()) == DeliveryReport()


def test_an_unreachable_endpoint_is_named_by_position_never_by_url(
    migrated_url: str, receiver: Receiver
) -> None:
    # a URL with a token in it, on a port nothing listens on
    secret_url = "http://127.0.0.1:9/hook?token=s3cr3t-t0ken"
    urls = (receiver.url, secret_url)
    with checked_authority(
        migrated_url, webhook_urls=urls, webhook_secret=SECRET_KEY, webhook_max_attempts=2
    ) as authority:
        authority.kernel(RunFactory(authority).create()).fail("boom")
        deliverer = Deliverer(authority, draw=lambda: 0.0)
        now = authority.clock()
        deliverer.tick(now)
        [event] = all_events(authority)
        assert event.state is EventState.PENDING
        assert event.last_error is not None and event.last_error.startswith("endpoint 2: ")
        # the endpoint that accepted is not sent it again
        assert event.next_attempt_at is not None
        deliverer.tick(event.next_attempt_at)
        deliverer.close()
        [event] = all_events(authority)
        assert event.state is EventState.FAILED
        assert len(receiver.deliveries) == 1
        for text in (event.body, event.last_error or "", repr(authority.settings)):
            assert "s3cr3t" not in text and SECRET not in text
            assert SECRET.removeprefix("whsec_") not in text


def test_a_run_created_by_create_rok_alerts_with_its_tenant(hooked: Authority) -> None:
    kernel = create_rok(store=hooked.store, settings=hooked.settings, tenant_id="t1")
    kernel.declare_expectations()
    kernel.fail("boom")
    [event] = all_events(hooked)
    assert event.tenant_id == "t1" and event.run_id == kernel.run_id
    assert event.payload["data"]["tenant_id"] == "t1"
