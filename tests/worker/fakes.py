"""Test doubles shared by the worker and domain tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.worker.acks import AckChannel
from service.worker.context import RunContext


@dataclass
class SentAck:
    domain: str
    action: str
    result_id: str | None
    error: str | None
    details: dict[str, Any] | None


@dataclass
class FakeAcks(AckChannel):
    """Records what domains send instead of posting it.

    A subclass because the hooks take the concrete AckChannel; its own
    `__init__` (a client, a run) is replaced by the dataclass one, and every
    method that would reach the client is overridden.
    """

    previous_acks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    sent: list[SentAck] = field(default_factory=list)

    def owes(self, domain: str, action: str) -> bool:
        return all((a.domain, a.action) != (domain, action) for a in self.sent)

    def previous(self, domain: str, action: str) -> dict[str, Any] | None:
        return self.previous_acks.get((domain, action))

    async def send(
        self,
        domain: str,
        action: str,
        result_id: str | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> bool:
        if not self.owes(domain, action):
            return False
        self.sent.append(SentAck(domain, action, result_id, error, details))
        return True

    async def flush(self) -> None:
        """Nothing to wait for: `send` records at once."""

    async def close(self) -> None:
        """Nothing queued to drop."""

    def one(self, domain: str, action: str) -> SentAck:
        found = [a for a in self.sent if (a.domain, a.action) == (domain, action)]
        assert len(found) == 1, f"{domain}/{action} sent {len(found)} times: {self.sent}"
        return found[0]


def make_context(handler: str = "job", attempt: int = 1, input: Any = None) -> RunContext:
    run = {"id": "run-1", "handler": handler, "input": input, "attempt": attempt}
    return RunContext(run, "host/pid-1/abc")
