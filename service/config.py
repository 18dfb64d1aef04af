"""Settings from the environment (DESIGN.md section 6).

Read once at start-up; a malformed value stops start-up with a ConfigError that
names the variable, because a governance layer silently running with a
default it was told not to use is worse than one that does not start.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from service.errors import ConfigError

MAX_TIMEOUT_MS = 24 * 60 * 60 * 1000  # 24 h: the longest run or wait rok accepts
DEFAULT_DATABASE_URL = "sqlite:///./rok.db"
DEFAULT_HISTORY_KEY_FILE = "rok-history.key"
AUTH_REQUIRED = "required"
AUTH_OFF = "off"
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

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
    # -- trust (DESIGN section 9) --
    auth: str = AUTH_REQUIRED
    """`required`: every request but health and docs needs a key; `off`: loopback only."""
    history_key: bytes | None = None
    """ROK_HISTORY_KEY: seals each run's history (HMAC); never stored in the database."""
    history_key_file: str = DEFAULT_HISTORY_KEY_FILE
    """Read (or created, 0600, when missing) if ROK_HISTORY_KEY is not set."""
    idempotency_ttl_s: int = 86400
    max_body_bytes: int = 1024 * 1024
    max_acks_per_run: int = 1000
    key_cache_ms: int = 1000
    """How long a key that authenticated is believed without reading it again (0: never)."""
    rate_limit: str | None = None
    """Per key, in the `limits` notation (`100/second`); None: no limit."""
    # -- run control (DESIGN section 11) --
    cancel_grace_ms: int = 30000
    """How long a worker has to stop a cancelled run before the sweeper fails it."""
    approval_timeout_ms: int = 86_400_000
    """How long a run waits for approval when its request or policy gives no timeout."""
    max_result_bytes: int = 262_144
    """The largest handler result (as JSON) a run keeps."""
    # -- alerts (DESIGN section 10) --
    # repr=False: a webhook URL often carries a token, and settings get logged
    webhook_urls: tuple[str, ...] = field(default=(), repr=False)
    """ROK_WEBHOOK_URLS: where run.failed, run.stale and governance.incomplete are sent."""
    webhook_secret: bytes | None = field(default=None, repr=False)
    """The key bytes of ROK_WEBHOOK_SECRET (`whsec_` + base64): signs every delivery."""
    webhook_max_attempts: int = 8
    """Deliveries of one event before it is given up (state `failed`)."""
    webhook_timeout_ms: int = 5000
    """How long one endpoint may take to answer one delivery."""
    # -- operators (DESIGN section 10) --
    log_format: str | None = None
    """ROK_LOG_FORMAT: `json` or `text`; None: text on a terminal, JSON otherwise."""
    log_level: str = "INFO"
    """ROK_LOG_LEVEL: DEBUG, INFO, WARNING, ERROR or CRITICAL (rok's and uvicorn's loggers)."""
    tenant_concurrency: int | None = None
    """Runs of one tenant leased at once where PUT /limits/tenant:<id> set none; None: any."""

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
            auth=_choice(env, "ROK_AUTH", AUTH_REQUIRED, (AUTH_REQUIRED, AUTH_OFF)),
            history_key=_history_key(env),
            history_key_file=(env.get("ROK_HISTORY_KEY_FILE") or "").strip()
            or DEFAULT_HISTORY_KEY_FILE,
            idempotency_ttl_s=_whole(env, "ROK_IDEMPOTENCY_TTL_S", 86400, 1, 365 * 86400),
            max_body_bytes=_whole(env, "ROK_MAX_BODY_BYTES", 1024 * 1024, 1024, 1 << 30),
            max_acks_per_run=_whole(env, "ROK_MAX_ACKS_PER_RUN", 1000, 1, 1_000_000),
            key_cache_ms=_millis(env, "ROK_KEY_CACHE_MS", 1000, minimum=0),
            rate_limit=_rate_limit(env),
            cancel_grace_ms=_millis(env, "ROK_CANCEL_GRACE_MS", 30000, minimum=0),
            approval_timeout_ms=_millis(env, "ROK_APPROVAL_TIMEOUT_MS", 86_400_000, minimum=1),
            max_result_bytes=_whole(env, "ROK_MAX_RESULT_BYTES", 262_144, 0, 64 * 1024 * 1024),
            webhook_urls=_webhook_urls(env),
            webhook_secret=_webhook_secret(env),
            webhook_max_attempts=_whole(env, "ROK_WEBHOOK_MAX_ATTEMPTS", 8, 1, 100),
            webhook_timeout_ms=_millis(env, "ROK_WEBHOOK_TIMEOUT_MS", 5000, minimum=1),
            log_format=_choice(env, "ROK_LOG_FORMAT", "", LOG_FORMATS) or None,
            log_level=_log_level(env),
            tenant_concurrency=_optional_whole(env, "ROK_TENANT_CONCURRENCY", 1, 1_000_000),
        )._check_webhooks()

    @property
    def auth_required(self) -> bool:
        return self.auth == AUTH_REQUIRED

    def _check_webhooks(self) -> Settings:
        # an endpoint that cannot check where an alert came from would page on forgeries
        if self.webhook_urls and self.webhook_secret is None:
            raise ConfigError(
                "ROK_WEBHOOK_URLS is set but ROK_WEBHOOK_SECRET is not: every delivery is "
                "signed; set it to whsec_ + base64 of 24 to 64 random bytes"
            )
        return self


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
    return _whole(env, name, default, minimum, MAX_TIMEOUT_MS, unit="milliseconds")


def _database_url(env: Mapping[str, str]) -> str:
    raw = (env.get("ROK_DATABASE_URL") or "").strip() or DEFAULT_DATABASE_URL
    if not raw.startswith(("sqlite://", "postgresql")):
        raise ConfigError(
            f"ROK_DATABASE_URL={raw!r} is not supported; use sqlite:///path/to/rok.db "
            "or postgresql+psycopg://user@host/db"
        )
    return raw


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise ConfigError(f"{name}={env.get(name)!r} is not one of: {', '.join(choices)}")
    return raw


def _log_level(env: Mapping[str, str]) -> str:
    raw = (env.get("ROK_LOG_LEVEL") or "").strip().upper()
    if not raw:
        return "INFO"
    if raw not in LOG_LEVELS:
        raise ConfigError(
            f"ROK_LOG_LEVEL={env.get('ROK_LOG_LEVEL')!r} is not a log level; "
            f"use one of: {', '.join(LOG_LEVELS)}"
        )
    return raw


def _whole(
    env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int, unit: str = ""
) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        of_unit = f" of {unit}" if unit else ""
        raise ConfigError(f"{name}={raw!r} is not a whole number{of_unit}") from None
    if not minimum <= value <= maximum:
        units = f"{unit} " if unit else ""
        raise ConfigError(f"{name}={raw!r} is out of range: {units}from {minimum} to {maximum}")
    return value


def _optional_whole(env: Mapping[str, str], name: str, minimum: int, maximum: int) -> int | None:
    """A whole number, or None when the variable is unset or empty."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    return _whole(env, name, 0, minimum, maximum)


def _history_key(env: Mapping[str, str]) -> bytes | None:
    raw = (env.get("ROK_HISTORY_KEY") or "").strip()
    if not raw:
        return None
    if len(raw) < 32:
        raise ConfigError(
            "ROK_HISTORY_KEY is too short to seal a history: use at least 32 characters "
            "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    return raw.encode()


def _rate_limit(env: Mapping[str, str]) -> str | None:
    raw = (env.get("ROK_RATE_LIMIT") or "").strip()
    if not raw:
        return None
    from limits import parse_many  # only a service that limits needs the parser

    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(
            f"ROK_RATE_LIMIT={raw!r} is not a rate limit; write e.g. 100/second or 1000/minute"
        ) from None
    return raw


# Standard Webhooks: a secret is whsec_ + base64 of 24 to 64 bytes.
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_BYTES = (24, 64)


def _webhook_urls(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("ROK_WEBHOOK_URLS") or ""
    urls = tuple(u.strip() for u in raw.split(",") if u.strip())
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # the value may hold a token: name the position, not the URL
            position = urls.index(url) + 1
            raise ConfigError(
                f"ROK_WEBHOOK_URLS: entry {position} is not an http(s) URL with a host; "
                "write e.g. https://alerts.example/rok,https://pager.example/hook"
            )
    if len(set(urls)) != len(urls):
        raise ConfigError("ROK_WEBHOOK_URLS names the same URL twice")
    return urls


def _webhook_secret(env: Mapping[str, str]) -> bytes | None:
    raw = (env.get("ROK_WEBHOOK_SECRET") or "").strip()
    if not raw:
        return None
    low, high = WEBHOOK_SECRET_BYTES
    hint = (
        f"write {WEBHOOK_SECRET_PREFIX} followed by base64 of {low} to {high} random bytes "
        "(e.g. `python -c 'import base64, secrets; "
        'print("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())\'`)'
    )
    # never echo the value: it is the key
    if not raw.startswith(WEBHOOK_SECRET_PREFIX):
        raise ConfigError(f"ROK_WEBHOOK_SECRET does not start with {WEBHOOK_SECRET_PREFIX}; {hint}")
    try:
        key = base64.b64decode(raw[len(WEBHOOK_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"ROK_WEBHOOK_SECRET is not valid base64 after the prefix; {hint}"
        ) from None
    if not low <= len(key) <= high:
        raise ConfigError(f"ROK_WEBHOOK_SECRET holds {len(key)} bytes; {hint}")
    return key
