"""The request context every log line reads: its X-Request-ID, the run and the tenant.

`RequestIds` is the outermost layer of the app (outside Starlette's error
middleware, so a 500 answer carries the id too). It takes the caller's
X-Request-ID when it is printable ASCII of at most 200 characters, else
makes one, echoes it in the answer and puts a `RequestContext` in a context
variable for the rest of the request.

The context is one mutable object, not several variables: the routes run in
worker threads with a *copy* of the context, and whatever fills it in there
(the store's observers name the run a request created or claimed) must be
seen by the access-log line written afterwards on the event loop. The run id
and tenant id are read lazily, when a line is logged: the router has put the
path's `run_id` in the scope by then, and AuthGate the caller's principal.

The variable is never reset: uvicorn runs each request in a task of its
own, whose context dies with it, and resetting would strip the id from the
traceback uvicorn logs after the app raised.
"""

from __future__ import annotations

import contextvars
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.auth import principal_of

HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 200
_HEADER_KEY = HEADER.lower().encode("latin-1")


class RequestContext:
    """What one request's log lines carry."""

    __slots__ = ("_run_id", "_tenant_id", "request_id", "scope")

    def __init__(self, request_id: str, scope: Scope | None = None) -> None:
        self.request_id = request_id
        self.scope: Scope = scope if scope is not None else {}
        self._run_id: str | None = None
        self._tenant_id: str | None = None

    @property
    def run_id(self) -> str | None:
        """The run the request is about: its path's, or the one it created or claimed."""
        path_params: dict[str, Any] = self.scope.get("path_params") or {}
        in_path = path_params.get("run_id")
        return str(in_path) if in_path is not None else self._run_id

    @property
    def tenant_id(self) -> str | None:
        """The caller's tenant (its key's), else the tenant of the run it wrote to."""
        principal = principal_of(self.scope)
        if principal is not None and principal.tenant_id is not None:
            return principal.tenant_id
        return self._tenant_id

    def about_run(self, run_id: str | None, tenant_id: str | None) -> None:
        """Name the run this request acted on, unless its path names one already."""
        if self._run_id is None:
            self._run_id = run_id
        if self._tenant_id is None:
            self._tenant_id = tenant_id


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "rok_request_context", default=None
)


def current_request() -> RequestContext | None:
    """The context of the request this code runs for; None outside a request."""
    return _current.get()


def accepted_request_id(value: str | None) -> str | None:
    """The caller's id if it is safe to log and echo: 1-200 printable ASCII characters.

    Anything else (control characters that would forge log lines, non-ASCII,
    an empty or oversized value) is not used; the request gets a fresh id.
    """
    if value is None or not 0 < len(value) <= MAX_REQUEST_ID_LENGTH:
        return None
    if not all(" " <= ch <= "~" for ch in value):
        return None
    return value


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIds:
    """ASGI middleware: X-Request-ID taken or made, echoed, and set for every log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == _HEADER_KEY:
                given = value.decode("latin-1")
                break
        request_id = accepted_request_id(given) or new_request_id()
        _current.set(RequestContext(request_id, scope))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (_HEADER_KEY, request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
