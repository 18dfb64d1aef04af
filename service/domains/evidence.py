"""What the reference domains put in their acks: who acted, ids, times, short renderings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from service.worker import RunContext


def provenance(ctx: RunContext) -> dict[str, Any]:
    """Who acted, in which attempt: in every reference ack, so a run's evidence shows
    which worker did what (the crash tests use it to prove no two workers overlapped)."""
    return {"worker_id": ctx.worker_id, "attempt": ctx.attempt}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def first_line(text: str | None, limit: int = 200) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def jsonable(value: Any, limit: int = 500) -> Any:
    """A short JSON-safe rendering of a handler's result or an attribute."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
