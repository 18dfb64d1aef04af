"""A webhook endpoint for tests: a real HTTP server in a thread that records what it got."""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

# the tests' ROK_WEBHOOK_SECRET: whsec_ + base64 of 32 bytes
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_KEY = base64.b64decode(SECRET.removeprefix("whsec_"))


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: str

    def verified(self) -> dict[str, Any]:
        """The body, once standardwebhooks accepted its signature (raises if not)."""
        payload: dict[str, Any] = Webhook(SECRET).verify(self.body, self.headers)
        return payload


class Receiver:
    """Answers each POST with the next scripted status (200 once the script is used up)."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.statuses: list[int] = []
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length).decode()
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.deliveries.append(
                        Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
                receiver.arrived.set()

            def log_message(self, format: str, *args: Any) -> None:
                return None  # quiet test output

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    @contextlib.contextmanager
    def serving(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()

    def of_type(self, event_type: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.verified()["type"] == event_type]
