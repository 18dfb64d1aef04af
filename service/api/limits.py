"""Request body limit (ROK_MAX_BODY_BYTES): a body over it is refused with 413 before parsing.

Also what the other gates in front of the app share: `replay_receive` (hand
the app a body that was already read). They answer refusals with
service.api.errors.send_problem.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import TOO_LARGE, send_problem

MAX_BODY_BYTES = 1024 * 1024
"""The default of ROK_MAX_BODY_BYTES (Settings.max_body_bytes); the app passes the setting."""


class BodySizeLimit:
    """Refuses bodies over `max_bytes`, declared (Content-Length) or streamed (chunked).

    A streamed body is read here, up to the limit, before the app sees it:
    raising from inside the app's `receive` would be caught by the framework's
    body parsing and answered as a 400, not as the 413 it is.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await self._refuse(scope, send)
                return
            await self.app(scope, receive, send)  # the server enforces the declared length
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, replay_receive([message]), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, replay_receive([body], then=receive), send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        detail = f"request body is larger than {self.max_bytes} bytes (ROK_MAX_BODY_BYTES)"
        await send_problem(scope, send, TOO_LARGE, detail)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def replay_receive(messages: list[Message], then: Receive | None = None) -> Receive:
    """A `receive` that hands out `messages`, then defers to `then` (disconnects)."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
