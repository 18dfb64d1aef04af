"""Every error rok raises on purpose derives from RokError.

The HTTP layer maps each class to one status code in one place
(`service.api.errors`), so a new error class is a new line there, not a new
try/except in a handler.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class RokError(Exception):
    """Root of every deliberate rok error."""


class RunNotFound(RokError):
    """No run with that id exists (HTTP 404)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} does not exist")
        self.run_id = run_id


class RunAlreadyExists(RokError):
    """A run with that id was already created (HTTP 409)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} already exists")
        self.run_id = run_id


class PhaseTransitionError(RokError):
    """The phase machine forbids the requested move (HTTP 409)."""

    def __init__(self, run_id: str, current: str, requested: str, why: str = "") -> None:
        because = f": {why}" if why else ""
        super().__init__(
            f"run {run_id} is in phase {current} and cannot move to {requested}{because}"
        )
        self.run_id = run_id
        self.current = current
        self.requested = requested


class GovernanceCheckError(RokError):
    """A strict governance check found expectations missing or failed."""

    def __init__(
        self,
        run_id: str,
        missing: list[tuple[str, str]],
        failed: list[tuple[str, str]],
    ) -> None:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(f"{d}/{a}" for d, a in missing))
        if failed:
            parts.append("failed " + ", ".join(f"{d}/{a}" for d, a in failed))
        super().__init__(f"governance check of run {run_id} did not pass: " + "; ".join(parts))
        self.run_id = run_id
        self.missing = missing
        self.failed = failed
        self.outcome: Any = None  # the kernel's GovernanceOutcome, set when raised


class LeaseLost(RokError):
    """The caller's lease on a run is missing, stale or someone else's (HTTP 409)."""

    def __init__(self, run_id: str, why: str) -> None:
        super().__init__(f"lease on run {run_id} rejected: {why}")
        self.run_id = run_id


class IdempotencyConflict(RokError):
    """An idempotency key was reused with a different request body (HTTP 422)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency_key {key!r} was already used with a different request body")
        self.key = key


class InvalidRequest(RokError):
    """A request that is well-formed JSON but asks for something rok refuses (HTTP 422).

    `loc` names the part of the request at fault when one is (`("query", "cursor")`);
    empty, the request as a whole.
    """

    def __init__(self, message: str, loc: Sequence[str | int] = ()) -> None:
        super().__init__(message)
        self.loc = tuple(loc)


class SchemaOutOfDate(RokError):
    """The database schema is behind the code; serving it could corrupt runs."""


class ConfigError(RokError):
    """An environment variable holds a value rok cannot use; the message names it."""


class Unauthorized(RokError):
    """No API key, or one rok does not know or has revoked (HTTP 401)."""


class Forbidden(RokError):
    """A valid key without the scope (or tenant) the request needs (HTTP 403)."""
