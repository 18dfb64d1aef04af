"""ROK_AUTH=off: served only on loopback, and only to this machine's own callers.

A web page must not drive runs on a laptop: a request whose Host is not a
loopback name (DNS rebinding) or whose Origin / Sec-Fetch-Site names another
site (a cross-site form post) is refused with 403, and nothing changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.auth import is_loopback_host, local_request_refusal

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "127.0.0.2", "::1", "[::1]", "app.localhost", "LOCALHOST."]
)
def test_loopback_names(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["rok.example", "10.0.0.1", "0.0.0.0", "localhost.evil.com", "127.0.0.1.nip.io", ""]
)
def test_names_that_are_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"host": "evil.example:8000"}, "Host"),
        ({"host": "127.0.0.1:8000", "origin": "https://evil.example"}, "Origin"),
        ({"host": "127.0.0.1:8000", "origin": "null"}, "Origin"),
        ({"host": "localhost:8000", "sec-fetch-site": "cross-site"}, "cross-site"),
    ],
)
def test_what_a_local_service_refuses(headers: dict[str, str], named: str) -> None:
    refusal = local_request_refusal(headers)
    assert refusal is not None
    assert named in refusal


def test_what_a_local_service_accepts() -> None:
    assert local_request_refusal({"host": "127.0.0.1:8000"}) is None
    assert local_request_refusal({"host": "[::1]:8000", "origin": "http://localhost:3000"}) is None
    assert local_request_refusal({"host": "localhost", "sec-fetch-site": "same-origin"}) is None


def test_a_cross_site_post_changes_nothing(client: TestClient) -> None:
    run = client.post("/runs", json={"handler": "h"}).json()
    for headers in (
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Host": "evil.example"},
    ):
        # a form post: no JSON body, the move needs none
        answer = client.post(f"/runs/{run['id']}/authorize", headers=headers)
        assert answer.status_code == 403, headers
        answer = client.post(f"/runs/{run['id']}/fail", data={"error": "x"}, headers=headers)
        assert answer.status_code == 403, headers
    assert client.get(f"/runs/{run['id']}").json()["phase"] == "CREATED"


def test_the_service_with_auth_off_refuses_a_public_address(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ROK_AUTH": "off",
        "ROK_DATABASE_URL": f"sqlite:///{tmp_path / 'rok.db'}",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "ROK_AUTH=off is served only on loopback" in done.stderr
    assert "rok keys create" in done.stderr
