"""Idempotency-Key on every POST (DESIGN section 9; the IETF httpapi Idempotency-Key draft).

A client that sends `Idempotency-Key: <key>` with a POST can send it again
after losing the answer, and the request is done once:

- the same key (per principal) with the same request (method, path, query and
  body bytes: a SHA-256 fingerprint) gets the first answer again (status,
  content type, body), marked `Idempotent-Replayed: true`, and nothing runs;
- the same key with another request: 422 naming the key;
- the same key while its first request is still running: 409 naming the key
  (with `Retry-After`);
- a 5xx answer is not remembered (the row is deleted, so a retry runs again),
  nor is a request refused before it got here (401/403/413/429: those gates
  sit outside this one);
- a key is remembered for ROK_IDEMPOTENCY_TTL_S (service.store.idempotency).

Pure ASGI: the body is read once, fingerprinted and handed to the app as it
came; the answer is held until it is stored, so a retry that arrives after
the answer left always finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.auth import principal_of
from service.api.errors import (
    IDEMPOTENCY_CONFLICT,
    IDEMPOTENCY_IN_PROGRESS,
    INVALID_REQUEST,
    field_error,
    send_problem,
)
from service.api.limits import replay_receive
from service.authority import Authority
from service.store.idempotency import (
    TOUCH_EVERY_S,
    Answered,
    Held,
    IdempotencyStore,
    Refusal,
)

log = logging.getLogger("rok.api.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
_HEADER = HEADER.lower().encode()

PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Makes the POST safe to retry: the same key (per API key) with the same request "
        "replays the first answer, marked `Idempotent-Replayed: true`, and does nothing "
        "again; with another request, 422; while the first is still running, 409. "
        "Remembered for ROK_IDEMPOTENCY_TTL_S; 5xx answers are not remembered. "
        f"1 to {MAX_KEY_LENGTH} printable ASCII characters, e.g. a UUID."
    ),
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "pattern": "^[\\x20-\\x7e]+$",
    },
}


def key_problem(values: list[bytes]) -> str | None:
    """Why these Idempotency-Key header values are not one usable key, or None."""
    if len(values) > 1:
        return f"send one {HEADER} header, not {len(values)}"
    value = values[0]
    if not 1 <= len(value) <= MAX_KEY_LENGTH or any(not 0x20 <= b <= 0x7E for b in value):
        return f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
    return None


def fingerprint(scope: Scope, body: bytes) -> str:
    """What makes two requests the same request: method, path, query and body bytes."""
    digest = hashlib.sha256()
    for part in (scope["method"].encode(), scope["path"].encode(), scope["query_string"], body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class IdempotencyReplay:
    """ASGI middleware: the Idempotency-Key rules above, inside AuthGate and the rate limit."""

    def __init__(self, app: ASGIApp, authority: Callable[[], Authority]) -> None:
        self.app = app
        self.authority = authority  # a getter: the lifespan sets the Authority up
        self._store: IdempotencyStore | None = None

    def _current(self) -> tuple[IdempotencyStore, Callable[[], datetime]]:
        authority = self.authority()
        store = self._store
        if store is None or store.db is not authority.database:
            store = IdempotencyStore(authority.database, authority.settings.idempotency_ttl_s)
            self._store = store
        return store, authority.clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = principal_of(scope) if scope["type"] == "http" else None
        values = [v for k, v in scope.get("headers", ()) if k == _HEADER]
        if principal is None or scope["method"] != "POST" or not values:
            await self.app(scope, receive, send)
            return
        problem = key_problem(values)
        if problem is not None:
            errors = [field_error(["header", HEADER], problem, "invalid_request")]
            await send_problem(scope, send, INVALID_REQUEST, problem, errors=errors)
            return
        key = values[0].decode("ascii")
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before it finished sending
        store, clock = self._current()
        begun = await anyio.to_thread.run_sync(
            store.begin, principal.id, key, fingerprint(scope, body), clock()
        )
        if isinstance(begun, Answered):
            await _replay(send, begun)
        elif begun is Refusal.REUSED:
            detail = (
                f"{HEADER} {key!r} was already used with a different request (method, path "
                "or body); send a new key for a new request"
            )
            errors = [field_error(["header", HEADER], detail, IDEMPOTENCY_CONFLICT.code)]
            await send_problem(scope, send, IDEMPOTENCY_CONFLICT, detail, errors=errors)
        elif begun is Refusal.IN_PROGRESS:
            detail = f"the request with {HEADER} {key!r} is still in progress; retry later"
            await send_problem(scope, send, IDEMPOTENCY_IN_PROGRESS, detail, {"Retry-After": "1"})
        else:
            receive = replay_receive([_request(body)], then=receive)
            await self._run(scope, receive, send, store, clock, begun)

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        store: IdempotencyStore,
        clock: Callable[[], datetime],
        held: Held,
    ) -> None:
        """Run the request holding the key; remember its answer, unless a 5xx."""
        answer = _Answer()
        keeper = _Keeper(store, clock, held)
        try:
            await self.app(scope, receive, answer.send)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(store.abandon, await keeper.stop())
            raise
        with anyio.CancelScope(shield=True):
            held = await keeper.stop()
            if answer.status is None or answer.status >= 500:
                await anyio.to_thread.run_sync(store.abandon, held)
            else:
                try:
                    await anyio.to_thread.run_sync(
                        store.finish, held, answer.status, answer.content_type, answer.body
                    )
                except Exception:  # the answer is still the answer: deliver it
                    log.exception("could not store the answer to %s %r", HEADER, held.key)
        for message in answer.messages:
            await send(message)


class _Answer:
    """Holds the app's answer until it is stored (a retry must find it once it left)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.status: int | None = None
        self.content_type: str | None = None
        self._chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            for name, value in message.get("headers", ()):
                if name.lower() == b"content-type":
                    self.content_type = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            self._chunks.append(message.get("body", b""))

    @property
    def body(self) -> bytes:
        return b"".join(self._chunks)


class _Keeper:
    """Touches the held row every TOUCH_EVERY_S while its request runs (it is not stale).

    Most requests end long before the first touch is due: until then this is
    one timer on the loop, no task and no thread.
    """

    def __init__(self, store: IdempotencyStore, clock: Callable[[], datetime], held: Held) -> None:
        self.held = held
        self._store = store
        self._clock = clock
        self._done = asyncio.Event()
        self._touching: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(TOUCH_EVERY_S, self._start)

    def _start(self) -> None:
        self._touching = asyncio.ensure_future(self._keep())

    async def _keep(self) -> None:
        while not self._done.is_set():
            touched = await anyio.to_thread.run_sync(self._store.touch, self.held, self._clock())
            if touched is None:
                return  # taken over: the request ran STALE_S without a touch
            self.held = touched
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), TOUCH_EVERY_S)

    async def stop(self) -> Held:
        """Stop touching (a touch under way finishes first); the row as last touched."""
        self._done.set()
        self._timer.cancel()
        if self._touching is not None:
            with contextlib.suppress(Exception):
                await self._touching
        return self.held


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _request(body: bytes) -> Message:
    return {"type": "http.request", "body": body, "more_body": False}


async def _replay(send: Send, answer: Answered) -> None:
    headers = [
        (b"content-length", str(len(answer.body)).encode()),
        (REPLAYED_HEADER.lower().encode(), b"true"),
    ]
    if answer.content_type is not None:
        headers.append((b"content-type", answer.content_type.encode("latin-1")))
    await send({"type": "http.response.start", "status": answer.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def document_idempotency_key(app: FastAPI) -> None:
    """List the Idempotency-Key header on every POST of the app's OpenAPI schema."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI builds it once and keeps it
        components = schema.setdefault("components", {}).setdefault("parameters", {})
        components["IdempotencyKey"] = PARAMETER
        reference = {"$ref": "#/components/parameters/IdempotencyKey"}
        for operations in schema.get("paths", {}).values():
            post = operations.get("post")
            if post is not None and reference not in post.setdefault("parameters", []):
                post["parameters"].append(reference)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
