"""Settings from the environment: DESIGN.md section 6, and refusals that name the variable."""

from __future__ import annotations

import pytest

from service.config import MAX_TIMEOUT_MS, Settings
from service.errors import ConfigError

MILLISECOND_VARIABLES = [
    "ROK_GOVERNANCE_TIMEOUT_MS",
    "ROK_DEFAULT_RUN_TIMEOUT_MS",
    "ROK_GRACE_PERIOD_MS",
    "ROK_SWEEP_INTERVAL_MS",
    "ROK_KEY_CACHE_MS",
]
BOOLEAN_VARIABLES = ["ROK_ENABLED", "RAC_ENABLED"]


def test_defaults_are_the_documented_ones() -> None:
    settings = Settings.from_env({})

    assert settings == Settings(
        rok_enabled=True,
        rac_enabled=True,
        governance_timeout_ms=5000,
        default_run_timeout_ms=30000,
        grace_period_ms=5000,
        database_url="sqlite:///./rok.db",
        sweep_interval_ms=1000,
    )


def test_empty_values_mean_the_default() -> None:
    variables = [*MILLISECOND_VARIABLES, *BOOLEAN_VARIABLES, "ROK_DATABASE_URL"]

    assert Settings.from_env(dict.fromkeys(variables, " ")) == Settings()


def test_well_formed_values_are_read() -> None:
    settings = Settings.from_env(
        {
            "ROK_ENABLED": "false",
            "RAC_ENABLED": "0",
            "ROK_GOVERNANCE_TIMEOUT_MS": " 250 ",
            "ROK_DEFAULT_RUN_TIMEOUT_MS": "60000",
            "ROK_GRACE_PERIOD_MS": "0",
            "ROK_DATABASE_URL": "postgresql+psycopg://rok@db/rok",
            "ROK_SWEEP_INTERVAL_MS": "10",
        }
    )

    assert settings == Settings(
        rok_enabled=False,
        rac_enabled=False,
        governance_timeout_ms=250,
        default_run_timeout_ms=60000,
        grace_period_ms=0,
        database_url="postgresql+psycopg://rok@db/rok",
        sweep_interval_ms=10,
    )


@pytest.mark.parametrize("variable", MILLISECOND_VARIABLES)
@pytest.mark.parametrize("value", ["abc", "-5", "1.5", "5s", str(MAX_TIMEOUT_MS + 1)])
def test_malformed_milliseconds_are_refused_by_name(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


@pytest.mark.parametrize("variable", ["ROK_DEFAULT_RUN_TIMEOUT_MS", "ROK_SWEEP_INTERVAL_MS"])
def test_zero_is_refused_where_it_would_mean_never(variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: "0"})


@pytest.mark.parametrize("variable", BOOLEAN_VARIABLES)
@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_malformed_booleans_are_refused_by_name(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


@pytest.mark.parametrize("value", ["mysql://x", "rok.db", "redis://localhost"])
def test_unsupported_database_urls_are_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match="ROK_DATABASE_URL"):
        Settings.from_env({"ROK_DATABASE_URL": value})


def test_log_format_and_level_are_read_in_any_case() -> None:
    assert Settings.from_env({}).log_format is None  # text on a terminal, JSON otherwise
    assert Settings.from_env({}).log_level == "INFO"
    settings = Settings.from_env({"ROK_LOG_FORMAT": " JSON ", "ROK_LOG_LEVEL": "debug"})
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")
    assert Settings.from_env({"ROK_LOG_FORMAT": "text"}).log_format == "text"
    blank = Settings.from_env({"ROK_LOG_FORMAT": " ", "ROK_LOG_LEVEL": ""})
    assert (blank.log_format, blank.log_level) == (None, "INFO")


@pytest.mark.parametrize(
    ("variable", "value", "names"),
    [
        ("ROK_LOG_FORMAT", "yaml", "json, text"),
        ("ROK_LOG_FORMAT", "logfmt", "json, text"),
        ("ROK_LOG_LEVEL", "verbose", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("ROK_LOG_LEVEL", "10", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("ROK_LOG_LEVEL", "WARN", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ],
)
def test_malformed_log_settings_are_refused_by_name(variable: str, value: str, names: str) -> None:
    with pytest.raises(ConfigError, match=variable) as refused:
        Settings.from_env({variable: value})
    assert repr(value) in str(refused.value)
    assert names in str(refused.value)


def test_tenant_concurrency_is_unlimited_unless_set() -> None:
    assert Settings.from_env({}).tenant_concurrency is None
    assert Settings.from_env({"ROK_TENANT_CONCURRENCY": " "}).tenant_concurrency is None
    assert Settings.from_env({"ROK_TENANT_CONCURRENCY": "25"}).tenant_concurrency == 25


@pytest.mark.parametrize("value", ["0", "-3", "ten", "1.5", "1000001"])
def test_a_bad_tenant_concurrency_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match="ROK_TENANT_CONCURRENCY"):
        Settings.from_env({"ROK_TENANT_CONCURRENCY": value})
