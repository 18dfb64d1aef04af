"""The operator's HTTP client: one request, its JSON, or a CommandFailed that says why.

The service is found at --url (ROK_URL, default http://127.0.0.1:8000) and
called with --key (ROK_API_KEY) as `Authorization: Bearer <key>`. An error
answer's message is the service's own `detail`, whichever shape it comes in:
`{"detail": "..."}`, a validation error's `{"detail": [{loc, msg}, ...]}`, or
an RFC 9457 problem document `{title, status, detail, code, errors?}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
import httpx

from service.ops_cli.exits import UNREACHABLE, CommandFailed, exit_code_for

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT_S = 30.0

F = TypeVar("F", bound=Callable[..., Any])


def service_options(command: F) -> F:
    """--url and --key, from ROK_URL and ROK_API_KEY when not given."""
    command = click.option(
        "--key",
        envvar="ROK_API_KEY",
        default=None,
        help="API key, sent as `Authorization: Bearer <key>` (env ROK_API_KEY; none for a "
        "service with ROK_AUTH=off).",
    )(command)
    command = click.option(
        "--url",
        envvar="ROK_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="The rok service (env ROK_URL).",
    )(command)
    return command


class Service:
    """Requests to one rok service; every failure is a CommandFailed with its exit code."""

    def __init__(self, url: str, key: str | None, timeout_s: float = TIMEOUT_S) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.close()

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, json=body)

    def _call(self, method: str, path: str, **request: Any) -> Any:
        try:
            answer = self._client.request(method, path, **request)
        except httpx.TransportError as exc:
            raise CommandFailed(
                f"cannot reach the rok service at {self.url}: {exc or type(exc).__name__}",
                UNREACHABLE,
            ) from None
        if answer.is_success:
            return answer.json()
        raise CommandFailed(
            f"{method} {path}: {answer.status_code} {describe_error(answer)}",
            exit_code_for(answer.status_code),
        )


def describe_error(answer: httpx.Response) -> str:
    """What the service said went wrong: its `detail`, with each field error it lists."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text.strip()[:500] or answer.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:500]
    detail = body.get("detail")
    parts = [detail] if isinstance(detail, str) and detail else []
    listed = body.get("errors") if isinstance(body.get("errors"), list) else detail
    if isinstance(listed, list):
        parts += [_field_error(e) for e in listed]
    if not parts:
        parts = [str(body.get("title") or answer.reason_phrase)]
    code = body.get("code")
    text = "; ".join(parts)
    return f"{text} ({code})" if isinstance(code, str) and code else text


def _field_error(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    message = str(error.get("msg", ""))
    return f"{where}: {message}" if where else message
