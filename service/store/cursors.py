"""Opaque page cursors for `GET /runs`: where the previous page ended."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from service.errors import InvalidRequest


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
