"""The sealed history: the history key, the canonical form of an entry and its seal.

Each transition and each ack stores `hash` = HMAC-SHA256(key, previous hash ‖
canonical JSON of the entry), as 64 hex digits. The previous hash of a run's
first entry is its genesis seal: HMAC-SHA256(key, canonical JSON of the run's
T0 declaration and contract), so an edit of the contract or of who created
the run breaks the chain too. `runs.chain_head` holds the last hash (the
genesis while `runs.chain_length` is 0).

Canonical JSON: sorted keys, no whitespace, ASCII; timestamps as ISO 8601 UTC
with microseconds; JSON columns as the database gives them back (a key that
was an int comes back a string). Every stored column of the entry is in it,
plus its `chain_seq`; the seal is not. Sealing (service.store.transaction,
service.store.runs) and verifying (service.store.verify) both use this module
and nothing else, so the two can never disagree on what an entry is.

The key is never stored in the database: whoever can edit the tables cannot
re-seal what they edited.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.config import Settings
from service.errors import ConfigError

MIN_KEY_CHARS = 32

TRANSITION_FIELDS = (
    "run_id",
    "seq",
    "attempt",
    "from_phase",
    "to_phase",
    "at",
    "reason",
    "details",
    "actor",
    "chain_seq",
)
ACK_FIELDS = (
    "run_id",
    "domain",
    "action",
    "result_id",
    "error",
    "at",
    "late",
    "details",
    "actor",
    "chain_seq",
)
DECLARATION_FIELDS = (
    "id",
    "tenant_id",
    "handler",
    "input",
    "run_timeout_ms",
    "max_attempts",
    "priority",
    "created_at",
    "created_by",
)
# Declared at creation and never changed after (migration 0008), sealed only
# when set: a run declared without them, or before they existed, seals as before.
OPTIONAL_DECLARATION_FIELDS = ("queue_deadline", "retry_policy")
EXPECTATION_FIELDS = ("domain", "action", "deadline_ms", "position")
_JSON_COLUMNS = frozenset({"input", "details", "retry_policy"})

Values = Mapping[Any, Any]
"""An entry: a database row (RowMapping), or the dict about to be written as one."""


# -- the key ---------------------------------------------------------------------


def history_key_for(settings: Settings, create: bool = True) -> bytes:
    """The key that seals histories: ROK_HISTORY_KEY, else the key file's.

    A missing file is created with a fresh random key (mode 0600) unless
    `create` is False (a verifier must not invent a key: every chain would
    then look broken); ConfigError, naming the file, when it cannot be used.
    """
    if settings.history_key is not None:
        return settings.history_key
    path = Path(settings.history_key_file)
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        if not create:
            raise ConfigError(
                f"no history key: ROK_HISTORY_KEY is not set and {path} does not exist; "
                "give the key the service seals with (ROK_HISTORY_KEY or ROK_HISTORY_KEY_FILE)"
            ) from None
    try:
        return _create_key_file(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the history key file {path} ({exc.strerror or exc}); "
            "set ROK_HISTORY_KEY or ROK_HISTORY_KEY_FILE"
        ) from None


def _read_key_file(path: Path) -> bytes:
    """The file's key, spelled as ROK_HISTORY_KEY would spell it (surrounding space dropped)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the history key file {path}: {exc}") from None
    if len(text) < MIN_KEY_CHARS:
        raise ConfigError(
            f"the history key file {path} holds too short a key: "
            f"use at least {MIN_KEY_CHARS} characters"
        )
    return text.encode()


def _create_key_file(path: Path) -> bytes:
    """Write 32 random bytes (as hex) to `path`, 0600, unless another process won the race."""
    text = secrets.token_hex(32)
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=".rok-history-")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(scratch, path)  # atomic, and refuses to replace an existing key
        except FileExistsError:
            return _read_key_file(path)
    finally:
        os.unlink(scratch)
    return text.encode()


# -- canonical form and seals ------------------------------------------------------


def _timestamp(value: Any) -> str:
    """ISO 8601 UTC with microseconds: the one spelling of a time in a canonical entry."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    raise TypeError(f"{type(value).__name__} has no canonical JSON form")


# built once: json.dumps with options builds an encoder per call
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_timestamp)


def canonical(values: Values, fields: Sequence[str]) -> bytes:
    """The canonical JSON of `fields` of `values` (a row, or what is about to be one)."""
    return _CANONICAL_JSON.encode(_plain(values, fields)).encode()


def _plain(values: Values, fields: Sequence[str]) -> dict[str, Any]:
    plain = {name: values[name] for name in fields}
    for name in _JSON_COLUMNS:
        if plain.get(name) is not None:
            # as the JSON column gives it back (an int key comes back a string)
            plain[name] = json.loads(json.dumps(plain[name]))
    return plain


def _mac(key: bytes, message: bytes) -> str:
    return hmac.digest(key, message, "sha256").hex()


def seal_transition(key: bytes, previous: str, values: Values) -> str:
    return _mac(key, previous.encode() + canonical(values, TRANSITION_FIELDS))


def seal_ack(key: bytes, previous: str, values: Values) -> str:
    return _mac(key, previous.encode() + canonical(values, ACK_FIELDS))


def seal_genesis(key: bytes, declaration: Values, contract: Sequence[Values]) -> str:
    """The seal of a run's T0: its declaration (DECLARATION_FIELDS) and its contract
    (EXPECTATION_FIELDS of each expectation, in `position` order)."""
    ordered = sorted(contract, key=lambda e: int(e["position"]))
    document = _plain(declaration, DECLARATION_FIELDS)
    for name in OPTIONAL_DECLARATION_FIELDS:
        value = declaration.get(name)
        if value is not None:
            document[name] = _plain(declaration, (name,))[name]
    document["expectations"] = [{name: e[name] for name in EXPECTATION_FIELDS} for e in ordered]
    return _mac(key, _CANONICAL_JSON.encode(document).encode())


def same_seal(stored: str | None, computed: str) -> bool:
    """Constant-time comparison of a stored seal with a recomputed one."""
    return stored is not None and hmac.compare_digest(stored, computed)
