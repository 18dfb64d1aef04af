"""Opaque page cursors for `GET /runs`: where the previous page ended."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, or_

from service.errors import InvalidRequest
from service.store.records import RunFilter
from service.store.tables import runs


def encode_cursor(created_at: datetime, run_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), run_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, run_id) of a cursor `encode_cursor` made; InvalidRequest for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, run_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None or not isinstance(run_id, str):
            raise ValueError
        # in UTC now, as stored: a forged date at the calendar's edge overflows
        # here, as a refused cursor, not later in the driver as a 500
        return parsed.astimezone(UTC), run_id
    except (ValueError, TypeError, OverflowError, RecursionError, binascii.Error):
        raise InvalidRequest(f"cursor {cursor!r} is not a cursor this service returned") from None


def page_query(
    query: Select[Any], filters: RunFilter, limit: int, cursor: str | None
) -> Select[Any]:
    """`query` over runs, filtered, newest first, after `cursor`, one row past `limit`.

    The extra row tells whether another page follows. InvalidRequest for a
    cursor this service did not give out.
    """
    if filters.phase is not None:
        query = query.where(runs.c.phase == filters.phase.value)
    if filters.tenant_id is not None:
        query = query.where(runs.c.tenant_id == filters.tenant_id)
    if filters.handler is not None:
        query = query.where(runs.c.handler == filters.handler)
    if cursor is not None:
        after_at, after_id = decode_cursor(cursor)
        query = query.where(
            or_(
                runs.c.created_at < after_at,
                and_(runs.c.created_at == after_at, runs.c.id < after_id),
            )
        )
    return query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit + 1)
