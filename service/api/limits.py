"""Request body limit (ROK_MAX_BODY_BYTES): a body over it is refused with 413 before parsing.

Also what the other gates in front of the app share: `respond` (a JSON
refusal) and `replay_receive` (hand the app a body that was already read).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
                await self._refuse(send)
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
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, replay_receive([body], then=receive), send)

    async def _refuse(self, send: Send) -> None:
        detail = f"request body is larger than {self.max_bytes} bytes (ROK_MAX_BODY_BYTES)"
        await respond(send, 413, detail, "too_large")


async def respond(
    send: Send, status: int, detail: str, code: str, headers: dict[str, str] | None = None
) -> None:
    """A JSON refusal `{detail, code}`, sent by a gate before the app ran."""
    body = json.dumps({"detail": detail, "code": code}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.encode(), value.encode()) for name, value in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


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
