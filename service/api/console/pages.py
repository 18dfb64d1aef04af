"""Rendering the console's pages: the template environment, formats, and safe answers.

Every page is answered with a Content-Security-Policy that lets the browser
load nothing but this service's own stylesheet: no script, no frame, no
asset of another host, and forms that post only here.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from fastapi.responses import HTMLResponse, Response

from service.model.phases import TERMINAL_PHASES, RunPhase

_PACKAGE = resources.files("service.api.console")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # a page shows one tenant's runs: no shared cache may keep it
    "Cache-Control": "no-store",
}

STATIC_FILES: dict[str, tuple[bytes, str]] = {
    "console.css": (_PACKAGE.joinpath("static", "console.css").read_bytes(), "text/css"),
}
"""The files under /ui/static/, read once: the only assets the console has."""

STATIC_VERSION = hashlib.sha256(b"".join(body for body, _ in STATIC_FILES.values())).hexdigest()[
    :12
]
"""Part of every asset's URL, so a browser may cache an asset until it changes."""


def format_time(value: datetime | None) -> str:
    """2026-12-02 09:08:31.893 UTC (milliseconds: the moves of a run are that close)."""
    if value is None:
        return "—"
    at = value.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d} UTC"


def iso_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def format_duration(ms: float) -> str:
    """A length of time for a person: 0 ms, 420 ms, 1.5 s, 2 min 5 s, 3 h 10 min."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=_plain)


def show_value(value: Any) -> str:
    """A field's value on a page: JSON's words for null and booleans, JSON for the rest."""
    if value is None:
        return "—"
    if isinstance(value, bool | int | float | dict | list):
        return json.dumps(value, ensure_ascii=False, default=_plain)
    if isinstance(value, datetime):
        return format_time(value)
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_time(value)
    return str(value)


def is_live(phase: RunPhase) -> bool:
    return phase not in TERMINAL_PHASES


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("service.api.console", "templates"),
    # every value a run carries is someone's input: escape all of it, in HTML and SVG
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENVIRONMENT.filters.update(
    time=format_time, iso=iso_time, duration=format_duration, json=pretty_json, value=show_value
)
_ENVIRONMENT.globals.update(static_version=STATIC_VERSION, phases=list(RunPhase))


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template `name` as an HTML answer with the console's security headers."""
    html = _ENVIRONMENT.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def static_file(name: str) -> Response:
    """A file of static/, or 404; cached by the browser (its URL changes with it)."""
    found = STATIC_FILES.get(name)
    if found is None:
        return Response("no such file", status_code=404, media_type="text/plain")
    body, media_type = found
    headers = {
        "Cache-Control": "public, max-age=86400",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(body, media_type=media_type, headers=headers)
