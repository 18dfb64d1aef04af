"""Logging, configured once at start: JSON lines or text, with the request's ids on each.

`configure_logging(settings)` puts one handler on the root logger (stderr):
JSON (python-json-logger) when ROK_LOG_FORMAT=json, or when it is unset and
stderr is not a terminal (a container, a service manager, a file); text on a
terminal or with ROK_LOG_FORMAT=text. ROK_LOG_LEVEL sets the level. uvicorn's
loggers lose the handlers uvicorn gave them and propagate to the same handler,
so the access log has the same format, and its JSON lines carry the method,
path, status and client as fields.

`rok serve` calls it before uvicorn starts (and passes log_config=None, so
uvicorn leaves it alone); an app built by uvicorn itself (`uvicorn --factory
service.api.app:create_app`) calls it from the factory, after uvicorn's own
setup. Calling it again replaces rok's handler instead of adding a second.

Every line gets `request_id`, `run_id` and `tenant_id` from the request it is
logged for (service.api.observability.context); outside a request they are
absent from JSON and from text.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from service.api.observability.context import current_request
from service.config import Settings

HANDLER_NAME = "rok"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
CONTEXT_FIELDS = ("request_id", "run_id", "tenant_id")
ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(context)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


class RequestContextFilter(logging.Filter):
    """Adds the current request's ids to each record (and the access log's fields)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_request()
        if context is not None:
            fields: tuple[tuple[str, str | None], ...] = (
                ("request_id", context.request_id),
                ("run_id", context.run_id),
                ("tenant_id", context.tenant_id),
            )
            for name, value in fields:
                if value is not None:
                    setattr(record, name, value)
        # also what a line outside any request names itself (`extra={"run_id": ...}`)
        shown = [f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS if hasattr(record, n)]
        record.context = f" [{' '.join(shown)}]" if shown else ""
        args = record.args
        # uvicorn's access line: (client, method, path, http version, status)
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            for field, arg in zip(ACCESS_FIELDS, args, strict=True):
                setattr(record, field, arg)
        return True


class RokJsonFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, then the context fields."""

    def __init__(self) -> None:
        super().__init__(
            JSON_FIELDS,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data.pop("context", None)  # the text format's rendering of the context fields
        log_data.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message


def wants_json(settings: Settings, stream: TextIO) -> bool:
    if settings.log_format is not None:
        return settings.log_format == "json"
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Install rok's handler on the root logger (replacing an earlier one); return it."""
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.set_name(HANDLER_NAME)
    formatter: logging.Formatter
    if wants_json(settings, stream):
        formatter = RokJsonFormatter()
    else:
        formatter = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    handler.addFilter(RequestContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler
