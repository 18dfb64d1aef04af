"""The operator console at /ui (DESIGN section 10): runs, a run's timeline, its evidence.

Server-rendered HTML (Jinja2 templates in templates/, one stylesheet in
static/), no JavaScript and nothing loaded from another host. It reads runs
through the same Authority the JSON API uses, and shows what the API's
presenters show, so a field added to a run there appears here too.
"""

from __future__ import annotations

from service.api.console.routes import router

__all__ = ["router"]
