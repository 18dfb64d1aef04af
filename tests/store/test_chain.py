"""Sealed histories (DESIGN.md section 9, tamper evidence), on both backends.

Every write path seals its entry; an edit, a deletion or a missing seal made
in the database behind rok's back is reported for that run and only that run;
the key is nowhere in the database.
"""

from __future__ import annotations

import hashlib
import hmac
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from service.authority import Authority
from service.config import Settings
from service.errors import ConfigError
from service.kernel.kernel import create_rok
from service.model.phases import RunPhase
from service.store.chain import canonical, history_key_for, seal_genesis, seal_transition
from service.store.runs import RunStore
from service.store.tables import metadata
from service.store.verify import BrokenAt, verify_every_run
from service.sweeper import Sweeper
from tests.store.conftest import new_run
from tests.support.chains import (
    KEY,
    LIFECYCLE_ENTRIES,
    OTHER_KEY,
    assert_sealed,
    chain_of,
    execute,
    fetch,
    lifecycle,
    sealed_authority,
)


@pytest.fixture
def sealed(migrated_url: str) -> Iterator[Authority]:
    current = sealed_authority(migrated_url)
    try:
        yield current
    finally:
        current.close()


def broken(authority: Authority, run_id: str) -> BrokenAt | None:
    return authority.store.verify(run_id).first_broken


# -- the canonical form ------------------------------------------------------------


def test_canonical_json_is_sorted_compact_with_utc_microseconds() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    values = {"b": 1, "at": at, "details": {"z": None, 1: [True]}, "ignored": "x"}

    assert canonical(values, ("details", "b", "at")) == (
        b'{"at":"2026-01-02T03:04:05.000006+00:00","b":1,"details":{"1":[true],"z":null}}'
    )


def test_a_seal_is_the_hmac_of_the_previous_seal_and_the_canonical_entry() -> None:
    entry = {
        "run_id": "r",
        "seq": 1,
        "attempt": 1,
        "from_phase": "CREATED",
        "to_phase": "AUTHORIZED",
        "at": datetime(2026, 1, 1, tzinfo=UTC),
        "reason": None,
        "details": None,
        "actor": None,
        "chain_seq": 1,
    }
    message = b"0" * 64 + (
        b'{"actor":null,"at":"2026-01-01T00:00:00.000000+00:00","attempt":1,"chain_seq":1,'
        b'"details":null,"from_phase":"CREATED","reason":null,"run_id":"r","seq":1,'
        b'"to_phase":"AUTHORIZED"}'
    )

    assert (
        seal_transition(KEY, "0" * 64, entry) == hmac.new(KEY, message, hashlib.sha256).hexdigest()
    )


# -- sealing on every write path ------------------------------------------------------


def test_a_new_run_starts_its_chain_from_the_seal_of_its_declaration(store: RunStore) -> None:
    new = new_run(input={"k": [1, 2]}, created_by="key-1", tenant_id="acme")
    store.create(new)

    row = store.get(new.id).row
    contract = [
        {"domain": d, "action": a, "deadline_ms": ms, "position": i}
        for i, (d, a, ms) in enumerate(new.contract)
    ]
    declared = {
        "id": new.id,
        "tenant_id": "acme",
        "handler": None,
        "input": {"k": [1, 2]},
        "run_timeout_ms": new.run_timeout_ms,
        "max_attempts": 1,
        "priority": 0,
        "created_at": new.created_at,
        "created_by": "key-1",
    }
    assert (row.chain_length, row.chain_head) == (
        0,
        seal_genesis(store.history_key, declared, contract),
    )
    report = store.verify(new.id)
    assert (report.intact, report.checked, report.first_broken) == (True, 0, None)


def test_every_move_and_ack_of_a_lifecycle_is_sealed(sealed: Authority) -> None:
    run_id = lifecycle(sealed)

    assert assert_sealed(sealed, run_id) == LIFECYCLE_ENTRIES
    kinds = [kind for kind, _, _ in chain_of(sealed.database.url, run_id)]
    assert kinds == ["transition"] * 2 + ["ack"] * 4 + ["transition"] * 3 + ["ack"]


def test_an_attempt_entry_a_failure_and_a_late_ack_are_sealed(sealed: Authority) -> None:
    run_id = _started(sealed, max_attempts=2)
    kernel = sealed.kernel(run_id)

    kernel.release_for_retry("lease expired")
    assert_sealed(sealed, run_id)
    kernel.fail("gave up")
    assert_sealed(sealed, run_id)
    kernel.ack("incidents", "create_incident", "late-1")  # kept as drift, and sealed
    assert assert_sealed(sealed, run_id) == 6


def test_the_sweepers_stale_failure_and_its_incident_ack_are_sealed(sealed: Authority) -> None:
    run_id = _started(sealed, run_timeout_ms=10)
    deadline = sealed.store.get(run_id).row.finalize_deadline
    assert deadline is not None

    report = Sweeper(sealed).tick(deadline + timedelta(milliseconds=1))

    assert report.failed_stale == [run_id]
    assert assert_sealed(sealed, run_id) == 5  # + incident ack, FAILED, finalize_run ack
    record = sealed.store.get(run_id)
    assert record.phase is RunPhase.FAILED
    assert [a.action for a in record.acks] == ["create_incident", "finalize_run"]


def _started(authority: Authority, **spec: Any) -> str:
    """A run authorized and executing: two sealed entries."""
    kernel = create_rok(store=authority.store, settings=authority.settings, **spec)
    kernel.declare_expectations()
    kernel.authorize("GRANTED", begin_execution=True)
    return kernel.run_id


# -- tampering ------------------------------------------------------------------


def test_an_edited_transition_breaks_that_run_only(sealed: Authority) -> None:
    url = sealed.database.url
    edited, untouched = lifecycle(sealed), lifecycle(sealed)

    edit = "UPDATE transitions SET reason = 'all fine' WHERE run_id = :id AND seq = 3"
    assert execute(url, edit, id=edited) == 1

    assert broken(sealed, edited) == BrokenAt("transition", 7)
    assert broken(sealed, untouched) is None
    verdicts = {r.run_id: r.first_broken for r in sealed.store.verify_all()}
    assert verdicts == {edited: BrokenAt("transition", 7), untouched: None}


def test_an_edited_ack_breaks_that_run_only(sealed: Authority) -> None:
    url = sealed.database.url
    edited, untouched = lifecycle(sealed), lifecycle(sealed)

    edit = "UPDATE acks SET result_id = 'inc-forged' WHERE run_id = :id AND result_id = 'inc-1'"
    assert execute(url, edit, id=edited) == 1

    report = sealed.store.verify(edited)
    assert (report.intact, report.checked, report.first_broken) == (False, 3, BrokenAt("ack", 3))
    assert broken(sealed, untouched) is None


def test_an_edited_contract_is_caught(sealed: Authority) -> None:
    url = sealed.database.url
    fresh, moved = _created(sealed), lifecycle(sealed)
    loosen = "UPDATE expectations SET deadline_ms = deadline_ms + 60000 WHERE run_id = :id"

    execute(url, loosen, id=fresh)
    execute(url, loosen, id=moved)

    assert broken(sealed, fresh) == BrokenAt("contract", 0)
    # the first entry's seal covers the genesis: the break shows there
    assert broken(sealed, moved) == BrokenAt("transition", 1)


def test_an_edit_of_who_created_the_run_is_caught(sealed: Authority) -> None:
    run_id = _created(sealed)

    execute(sealed.database.url, "UPDATE runs SET created_by = 'someone' WHERE id = :id", id=run_id)

    assert broken(sealed, run_id) == BrokenAt("contract", 0)


def test_a_deleted_middle_entry_is_caught(sealed: Authority) -> None:
    url = sealed.database.url
    run_id = lifecycle(sealed)

    execute(url, "DELETE FROM acks WHERE run_id = :id AND chain_seq = 5", id=run_id)

    assert broken(sealed, run_id) == BrokenAt("missing", 5)


def test_a_truncated_end_is_caught_even_with_the_length_put_back(sealed: Authority) -> None:
    url = sealed.database.url
    cut, recounted = lifecycle(sealed), lifecycle(sealed)
    last = "DELETE FROM acks WHERE run_id = :id AND chain_seq = 10"

    execute(url, last, id=cut)
    execute(url, last, id=recounted)
    execute(url, "UPDATE runs SET chain_length = 9 WHERE id = :id", id=recounted)

    assert broken(sealed, cut) == BrokenAt("missing", 10)
    assert broken(sealed, recounted) == BrokenAt("missing", 10)


def test_an_entry_without_a_seal_is_reported_unsealed(sealed: Authority) -> None:
    url = sealed.database.url
    no_hash, no_place = lifecycle(sealed), lifecycle(sealed)

    execute(url, "UPDATE transitions SET hash = NULL WHERE run_id = :id AND seq = 4", id=no_hash)
    unplace = "UPDATE acks SET chain_seq = NULL WHERE run_id = :id AND chain_seq = 10"
    execute(url, unplace, id=no_place)

    assert broken(sealed, no_hash) == BrokenAt("unsealed", 8)
    assert broken(sealed, no_place) == BrokenAt("unsealed", 0)


def test_a_run_from_before_sealing_is_unsealed_until_moved(sealed: Authority) -> None:
    url = sealed.database.url
    old, waiting = lifecycle(sealed), _created(sealed)
    execute(url, "UPDATE transitions SET chain_seq = NULL, hash = NULL WHERE run_id = :id", id=old)
    execute(url, "UPDATE acks SET chain_seq = NULL, hash = NULL WHERE run_id = :id", id=old)
    for run_id in (old, waiting):
        execute(
            url, "UPDATE runs SET chain_length = 0, chain_head = NULL WHERE id = :id", id=run_id
        )

    assert broken(sealed, old) == BrokenAt("unsealed", 0)
    assert broken(sealed, waiting) == BrokenAt("unsealed", 0)
    # its first move seals it from its declaration as it stands
    sealed.kernel(waiting).authorize("GRANTED")
    assert assert_sealed(sealed, waiting) == 1


def test_another_key_recomputes_other_seals(sealed: Authority, migrated_url: str) -> None:
    moved, fresh = lifecycle(sealed), _created(sealed)
    impostor = sealed_authority(migrated_url, key=OTHER_KEY)
    try:
        assert broken(impostor, moved) == BrokenAt("transition", 1)
        assert broken(impostor, fresh) == BrokenAt("contract", 0)
    finally:
        impostor.close()


def test_every_run_is_verified_a_page_at_a_time(sealed: Authority) -> None:
    run_ids = sorted(_created(sealed) for _ in range(5))
    execute(sealed.database.url, "UPDATE runs SET priority = 9 WHERE id = :id", id=run_ids[3])

    reports = list(verify_every_run(sealed.database, KEY, page=2))

    assert [r.run_id for r in reports] == run_ids
    assert [r.run_id for r in reports if not r.intact] == [run_ids[3]]


def _created(authority: Authority) -> str:
    kernel = create_rok(store=authority.store, settings=authority.settings, handler="job")
    kernel.declare_expectations()
    return kernel.run_id


# -- the key ---------------------------------------------------------------------------


def test_the_key_is_nowhere_in_the_database(sealed: Authority, tmp_path: Path) -> None:
    lifecycle(sealed)
    url = sealed.database.url
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        dump = repr([list(conn.execute(select(t))) for t in metadata.sorted_tables])
    engine.dispose()
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        dump += repr([p.read_bytes() for p in path.parent.glob(path.name + "*")])

    assert len(dump) > 1000  # the run, its contract, history and acks are in it
    for spelling in (KEY.decode(), KEY.hex()):
        assert spelling not in dump
    assert len(fetch(url, "SELECT id FROM runs")) == 1


def test_a_missing_key_file_is_created_once_with_a_fresh_key_only_its_owner_reads(
    tmp_path: Path,
) -> None:
    settings = Settings(history_key_file=str(tmp_path / "rok-history.key"))

    key = history_key_for(settings)

    mode = (tmp_path / "rok-history.key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert len(key) == 64 and bytes.fromhex(key.decode())
    assert history_key_for(settings) == key
    assert history_key_for(Settings(history_key_file=str(tmp_path / "other.key"))) != key
    # no scratch file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.key", "rok-history.key"]


def test_the_variable_wins_over_the_file(tmp_path: Path) -> None:
    settings = Settings(history_key=KEY, history_key_file=str(tmp_path / "unused.key"))

    assert history_key_for(settings) == KEY
    assert not (tmp_path / "unused.key").exists()


def test_a_verifier_never_invents_a_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no history key"):
        history_key_for(Settings(history_key_file=str(tmp_path / "absent.key")), create=False)
    assert not (tmp_path / "absent.key").exists()


def test_a_key_file_with_too_short_a_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "short.key").write_text("tiny\n")

    with pytest.raises(ConfigError, match="too short"):
        history_key_for(Settings(history_key_file=str(tmp_path / "short.key")))
