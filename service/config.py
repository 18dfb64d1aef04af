"""Settings from the environment (DESIGN.md section 6).

Read once at start-up; a malformed value stops start-up with a ConfigError that
names the variable, because a governance layer silently running with a
default it was told not to use is worse than one that does not start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from service.errors import ConfigError

MAX_TIMEOUT_MS = 24 * 60 * 60 * 1000  # 24 h: the longest run or wait rok accepts
DEFAULT_DATABASE_URL = "sqlite:///./rok.db"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    rok_enabled: bool = True
    rac_enabled: bool = True
    governance_timeout_ms: int = 5000
    default_run_timeout_ms: int = 30000
    grace_period_ms: int = 5000
    database_url: str = DEFAULT_DATABASE_URL
    sweep_interval_ms: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            rok_enabled=_bool(env, "ROK_ENABLED", True),
            rac_enabled=_bool(env, "RAC_ENABLED", True),
            governance_timeout_ms=_millis(env, "ROK_GOVERNANCE_TIMEOUT_MS", 5000, minimum=0),
            default_run_timeout_ms=_millis(env, "ROK_DEFAULT_RUN_TIMEOUT_MS", 30000, minimum=1),
            grace_period_ms=_millis(env, "ROK_GRACE_PERIOD_MS", 5000, minimum=0),
            database_url=_database_url(env),
            sweep_interval_ms=_millis(env, "ROK_SWEEP_INTERVAL_MS", 1000, minimum=1),
        )


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")


def _millis(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number of milliseconds") from None
    if not minimum <= value <= MAX_TIMEOUT_MS:
        raise ConfigError(
            f"{name}={raw!r} is out of range: milliseconds from {minimum} to {MAX_TIMEOUT_MS}"
        )
    return value


def _database_url(env: Mapping[str, str]) -> str:
    raw = (env.get("ROK_DATABASE_URL") or "").strip() or DEFAULT_DATABASE_URL
    if not raw.startswith(("sqlite://", "postgresql")):
        raise ConfigError(
            f"ROK_DATABASE_URL={raw!r} is not supported; use sqlite:///path/to/rok.db "
            "or postgresql+psycopg://user@host/db"
        )
    return raw
