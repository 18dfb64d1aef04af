"""Authority: what one rok process holds (settings, database, store, wake-ups).

The API, the sweeper and embedded users build kernels through it, so every
kernel of a process shares one engine and one set of ack signals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from service.config import Settings
from service.kernel.kernel import RunOrchestrationKernel
from service.kernel.rulebook import Rule
from service.kernel.spec import SERVICE, Caller
from service.model.phases import utc_now
from service.store.chain import history_key_for
from service.store.database import Database
from service.store.keys import KeyStore
from service.store.leases import LeaseStore
from service.store.limits import LimitStore
from service.store.runs import RunStore
from service.store.signals import Signals


class Authority:
    def __init__(
        self,
        settings: Settings,
        database: Database | None = None,
        clock: Callable[[], datetime] = utc_now,
        rules: Sequence[Rule] = (),
    ) -> None:
        """`rules`: the deployment's own rules, consulted before every move after
        the kernel's (service.kernel.rulebook)."""
        self.settings = settings
        self.rules = tuple(rules)
        self.database = database or Database(settings.database_url)
        self.signals = Signals()
        self.store = RunStore(
            self.database,
            self.signals,
            history_key=history_key_for(settings),
            record_events=bool(settings.webhook_urls),
        )
        self.leases = LeaseStore(self.store, settings.tenant_concurrency)
        self.limits = LimitStore(self.database, settings.tenant_concurrency)
        self.keys = KeyStore(self.database, settings.key_cache_ms / 1000)
        self.clock = clock

    def kernel(
        self,
        run_id: str,
        lease_token: str | None = None,
        now: datetime | None = None,
        keep_records: bool = False,
        caller: Caller = SERVICE,
    ) -> RunOrchestrationKernel:
        """A kernel for an existing run (the lease token fences lifecycle moves).

        `now` pins the kernel's clock, so the sweeper's tick(now) judges and
        records with the time it was given. `caller` is who acts: recorded as
        the actor, and confined to its tenant's runs.
        """
        return RunOrchestrationKernel(
            run_id,
            self.store,
            self.settings,
            lease_token=lease_token,
            clock=self.clock if now is None else (lambda: now),
            keep_records=keep_records,
            caller=caller,
            rules=self.rules,
        )

    def close(self) -> None:
        self.database.dispose()
