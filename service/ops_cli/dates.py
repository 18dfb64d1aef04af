"""`--finished-before DATE`: a calendar date or an instant, read as UTC unless it says otherwise."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

FORMAT = "YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z|±HH:MM] (ISO 8601; UTC unless an offset is given)"


class Instant(click.ParamType[datetime]):
    """An aware UTC datetime; a date alone is its midnight UTC."""

    name = "DATE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not a date: write {FORMAT}", param, ctx)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)


INSTANT = Instant()
