"""ROK_WEBHOOK_*: read as documented, refused with a message that names the variable."""

from __future__ import annotations

import base64

import pytest

from service.config import Settings
from service.errors import ConfigError
from tests.webhooks.receiver import SECRET, SECRET_KEY

URLS = "https://alerts.example/rok, http://pager.example:8080/hook?token=t0k3n"


def test_webhooks_are_off_unless_configured() -> None:
    settings = Settings.from_env({})
    assert settings.webhook_urls == () and settings.webhook_secret is None
    assert settings.webhook_max_attempts == 8 and settings.webhook_timeout_ms == 5000


def test_urls_and_secret_are_read() -> None:
    settings = Settings.from_env(
        {
            "ROK_WEBHOOK_URLS": URLS,
            "ROK_WEBHOOK_SECRET": SECRET,
            "ROK_WEBHOOK_MAX_ATTEMPTS": "3",
            "ROK_WEBHOOK_TIMEOUT_MS": "250",
        }
    )
    assert settings.webhook_urls == (
        "https://alerts.example/rok",
        "http://pager.example:8080/hook?token=t0k3n",
    )
    assert settings.webhook_secret == SECRET_KEY
    assert settings.webhook_max_attempts == 3 and settings.webhook_timeout_ms == 250


def test_the_settings_never_show_the_secret_or_the_urls() -> None:
    settings = Settings.from_env({"ROK_WEBHOOK_URLS": URLS, "ROK_WEBHOOK_SECRET": SECRET})
    shown = repr(settings)
    assert "t0k3n" not in shown and "alerts.example" not in shown
    assert SECRET.removeprefix("whsec_") not in shown and repr(SECRET_KEY) not in shown


def secret_of(size: int) -> str:
    return "whsec_" + base64.b64encode(b"k" * size).decode()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"ROK_WEBHOOK_URLS": "https://a.example/x"}, "ROK_WEBHOOK_SECRET is not"),
        ({"ROK_WEBHOOK_URLS": "ftp://a.example/x"}, "ROK_WEBHOOK_URLS: entry 1 is not"),
        ({"ROK_WEBHOOK_URLS": "https://a.example/x,/relative"}, "entry 2 is not an http(s)"),
        ({"ROK_WEBHOOK_URLS": "https://a.example/x,https://a.example/x"}, "the same URL twice"),
        ({"ROK_WEBHOOK_SECRET": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "does not start with whsec_"),
        ({"ROK_WEBHOOK_SECRET": "whsec_not base64!"}, "not valid base64"),
        ({"ROK_WEBHOOK_SECRET": secret_of(8)}, "holds 8 bytes"),
        ({"ROK_WEBHOOK_SECRET": secret_of(65)}, "holds 65 bytes"),
        ({"ROK_WEBHOOK_MAX_ATTEMPTS": "0"}, "ROK_WEBHOOK_MAX_ATTEMPTS='0' is out of range"),
        ({"ROK_WEBHOOK_TIMEOUT_MS": "soon"}, "ROK_WEBHOOK_TIMEOUT_MS='soon' is not a whole"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    assert says in str(refused.value)
    secret = env.get("ROK_WEBHOOK_SECRET", "")
    if secret.startswith("whsec_"):  # the key is never echoed
        assert secret.removeprefix("whsec_") not in str(refused.value)


def test_the_smallest_and_largest_keys_are_accepted() -> None:
    for size in (24, 64):
        settings = Settings.from_env({"ROK_WEBHOOK_SECRET": secret_of(size)})
        assert settings.webhook_secret == b"k" * size
