"""Driving one claimed run through its lifecycle, from the phase it is in.

A run released for another attempt comes back in whatever phase its last
worker reached, and phases never move backwards, so the driver continues:
CREATED is authorized (and begins execution in the same request),
AUTHORIZED begins execution, EXECUTING runs the handler (again: an earlier
attempt's work is at-least-once), GOVERNANCE_CHECK is checked (unless a check
was recorded) and finalized in the same request, and FINALIZING is finalized
with the outcome the run recorded.

Every move carries the lease token. A 409 (`Conflict`) on a move means the
run is no longer ours: the driver stops working on it at once and never
retries the fenced call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from service.worker.acks import AckChannel
from service.worker.api_errors import ApiError, Conflict, RunMissing
from service.worker.authorizer import Authorizer, decide
from service.worker.client import RokClient
from service.worker.context import Limits, RunContext
from service.worker.dispatch import DomainDispatcher
from service.worker.execution import Handler, execute
from service.worker.hooks import APPROVAL_REQUIRED, GRANTED, Domain
from service.worker.lease import LeaseKeeper
from service.worker.outcome import Outcome, OutcomeKind, keepable
from service.worker.results import RunResult
from service.worker.wire import TERMINAL, Claim, Run

log = logging.getLogger("rok.worker")

Number = TypeVar("Number", int, float)

# A best-effort call made while giving a run up (a fail, a read) waits this long at most.
GIVE_UP_CALL_S = 10.0


@dataclass(frozen=True)
class DriverSettings:
    worker_id: str
    lease_ms: int
    rok_enabled: bool
    governance_timeout_ms: int | None
    require_all_acks: bool
    domain_timeout_s: float
    authorize_timeout_s: float


class RunLost(Exception):
    """The run was taken from us (a fenced move, or stopped from outside)."""


class RunDriver:
    def __init__(
        self,
        client: RokClient,
        claim: Claim,
        handler: Handler,
        domains: Sequence[Domain],
        authorizer: Authorizer,
        settings: DriverSettings,
    ) -> None:
        self._client = client
        self._claim = claim
        self._handler = handler
        self._domains = list(domains)
        self._authorizer = authorizer
        self._settings = settings
        self.ctx = RunContext(claim.run, settings.worker_id)
        self._token = claim.token
        self._outcome: Outcome | None = None

    async def drive(self) -> RunResult:
        """Take the run as far as it goes here; never raises (but CancelledError)."""
        keeper = LeaseKeeper(self._client, self.ctx, self._token, self._settings.lease_ms)
        heartbeat = asyncio.create_task(keeper.run(), name=f"rok-heartbeat-{self.ctx.run_id[:8]}")
        try:
            if self._settings.rok_enabled:
                run = await self._governed()
            else:
                run = await self._ungoverned()
            return self._result(run, lost=False)
        except (Conflict, RunMissing, RunLost) as exc:
            log.info("run %s lost to us: %s", self.ctx.run_id, exc)
            return self._result(await self._read_back(), lost=True)
        except Exception as exc:
            log.exception("worker error on run %s; failing it", self.ctx.run_id)
            return self._result(await self._give_up(f"worker error: {exc!r}"), lost=False)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await heartbeat

    # -- the governed lifecycle --------------------------------------------------------

    async def _governed(self) -> Run:
        ctx, client, token = self.ctx, self._client, self._token
        run = self._claim.run
        phase = run["phase"]
        acks = AckChannel(client, run)
        domains = DomainDispatcher(self._domains, ctx, acks, self._settings.domain_timeout_s)
        try:
            if phase == "CREATED":
                decision = await decide(
                    ctx, self._domains, self._authorizer, self._settings.authorize_timeout_s
                )
                if decision.decision == APPROVAL_REQUIRED:
                    # held for a person: the run leaves us, claimable again once approved
                    return await client.authorize(
                        ctx.run_id, token, APPROVAL_REQUIRED, decision.reason
                    )
                if not decision.granted:
                    # the acks land before the denial makes the run terminal (else: drift)
                    domains.emit("on_denied", decision)
                    await domains.settle(self._settings.domain_timeout_s)
                    await acks.flush()
                    return await client.authorize(
                        ctx.run_id, token, decision.decision, decision.reason
                    )
                # nothing happens between the two moves here: one request makes both
                # the intermediate moves answer the run's state alone: the claim brought
                # the rest, and the last move's answer (the whole run) is the result
                run = await client.authorize(
                    ctx.run_id, token, GRANTED, decision.reason, begin_execution=True, minimal=True
                )
                phase = run["phase"]
            if phase == "AUTHORIZED":
                run = await client.begin_execution(ctx.run_id, token, minimal=True)
                phase = run["phase"]
            if phase == "EXECUTING":
                outcome = keepable(await self._execute(domains))
                if outcome.kind is OutcomeKind.SHUTDOWN:
                    # no time for a governance check: the evidence, then the failure
                    domains.emit("on_execution_end", outcome)
                    await domains.settle(self._settings.domain_timeout_s)
                    await acks.flush()
                    return await client.fail(ctx.run_id, outcome.error or "shutdown", token)
                if self._ends_the_run(outcome):
                    # nothing can undo this outcome (a success with nothing for the
                    # service to refuse): its evidence first, then execution-complete
                    # with the check and finalize, three moves in one request
                    self._outcome = outcome
                    domains.emit("on_execution_end", outcome)
                    await domains.settle(self._settings.domain_timeout_s)
                    await acks.flush()
                    await domains.close()
                    return await client.complete_and_check(
                        ctx.run_id,
                        token,
                        self._settings.governance_timeout_ms,
                        self._settings.require_all_acks,
                    )
                run, outcome = await self._report(outcome)
                phase = run["phase"]
                if phase == "EXECUTING":
                    # the retry policy made this failure the next attempt: the run's
                    # evidence is acked once, by the attempt that ends it
                    self._outcome = outcome
                    domains.emit("on_attempt_failed", outcome)
                    await domains.settle(self._settings.domain_timeout_s)
                    return run
                domains.emit("on_execution_end", outcome)
            else:
                outcome = Outcome.recorded(run)
                if phase == "GOVERNANCE_CHECK" and run.get("governance") is None:
                    domains.emit("on_execution_end", outcome)  # resumed: the acks are still owed
            self._outcome = self._outcome or outcome
            if phase == "GOVERNANCE_CHECK" and run.get("governance") is None:
                await acks.flush()  # what is ready is delivered; the rest the check waits for
                # the check finalizes with the outcome execution-complete recorded (this
                # one), in its own transaction; a strict check that did not pass fails it
                check = await client.governance_check(
                    ctx.run_id,
                    token,
                    self._settings.governance_timeout_ms,
                    self._settings.require_all_acks,
                    finalize=True,
                )
                run = dict(check["run"])
                if run["phase"] in TERMINAL:
                    return run
            await domains.close()
            return await client.finalize(ctx.run_id, token, outcome.success, outcome.error)
        finally:
            await domains.close()
            await acks.close()

    async def _execute(self, domains: DomainDispatcher) -> Outcome:
        ctx = self.ctx
        ctx.limits = self._limits()
        loop = asyncio.get_running_loop()

        def step_seen(step: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens
                loop.call_soon_threadsafe(domains.emit, "on_step", step)

        domains.emit("on_execution_start")
        ctx.on_step(step_seen)
        outcome = await execute(self._handler, ctx, int(self._claim.run["run_timeout_ms"]))
        self._outcome = outcome
        if not outcome.reportable:
            raise RunLost(outcome.error)
        return outcome

    def _ends_the_run(self, outcome: Outcome) -> bool:
        """Whether the outcome is final before the service sees it: a success (no retry
        follows one) that was not cancelled meanwhile (the service refuses that success)
        and returned nothing (a result may be refused as too large, which fails the
        execution: its evidence must not be sent first then)."""
        return outcome.success and outcome.result is None and self.ctx.stopped is None

    async def _report(self, outcome: Outcome) -> tuple[Run, Outcome]:
        """execution-complete with the outcome and the handler's result.

        A result the service refuses (over ROK_MAX_RESULT_BYTES) fails the
        execution with the service's reason instead: the run must not be left
        executing because of what its handler returned.
        """
        ctx, client, token = self.ctx, self._client, self._token
        try:
            run = await client.execution_complete(
                ctx.run_id,
                token,
                outcome.success,
                outcome.error,
                outcome.result,
                minimal=True,
                attempt=ctx.attempt,
            )
            return run, outcome
        except ApiError as exc:
            if outcome.result is None or exc.status != 422 or "result" not in exc.detail:
                raise
            why = exc.detail
        refused = Outcome(OutcomeKind.HANDLER_ERROR, f"result refused: {why}")
        self._outcome = refused
        run = await client.execution_complete(
            ctx.run_id, token, False, refused.error, minimal=True, attempt=ctx.attempt
        )
        return run, refused

    def _limits(self) -> Limits:
        """The tightest of the limits the domains set."""
        found = []
        for domain in self._domains:
            try:
                limits = domain.limits(self.ctx)
            except Exception:
                log.exception("domain %s failed to give limits", domain.name)
                continue
            if limits is not None:
                found.append(limits)
        return Limits(
            max_cost=_tightest(lim.max_cost for lim in found),
            max_steps=_tightest(lim.max_steps for lim in found),
            max_duration_ms=_tightest(lim.max_duration_ms for lim in found),
        )

    # -- ROK_ENABLED=false ------------------------------------------------------------

    async def _ungoverned(self) -> Run:
        """The seed's legacy path: run the handler, then one bare status update."""
        outcome = await execute(self._handler, self.ctx, int(self._claim.run["run_timeout_ms"]))
        self._outcome = outcome
        if not outcome.reportable:
            raise RunLost(outcome.error)
        return await self._client.ungoverned_outcome(
            self.ctx.run_id, self._token, outcome.success, outcome.error
        )

    # -- giving up ----------------------------------------------------------------------

    async def _give_up(self, error: str) -> Run | None:
        try:
            async with asyncio.timeout(GIVE_UP_CALL_S):
                return await self._client.fail(self.ctx.run_id, error, self._token)
        except Exception as exc:
            log.warning("could not fail run %s: %r", self.ctx.run_id, exc)
            return await self._read_back()

    async def _read_back(self) -> Run | None:
        try:
            async with asyncio.timeout(GIVE_UP_CALL_S):
                return await self._client.get_run(self.ctx.run_id)
        except Exception:
            return None

    def _result(self, run: Run | None, lost: bool) -> RunResult:
        kind = self._outcome.kind if self._outcome else None
        if run is None:
            return RunResult(
                run_id=self.ctx.run_id,
                handler=self.ctx.handler,
                phase="UNKNOWN",
                attempt=self.ctx.attempt,
                error=self._outcome.error if self._outcome else None,
                outcome=kind,
                lost=lost,
                run=None,
            )
        return RunResult.of(run, kind, lost)


def _tightest(values: Iterable[Number | None]) -> Number | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None
