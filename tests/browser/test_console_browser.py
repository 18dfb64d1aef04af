"""The console in a real browser: Debian's Chromium driven by Playwright.

A real rok server process with ROK_AUTH=required; two runs driven over HTTP
with an admin key (one completed with all its evidence, one failed with an
error ack and no governance check); then, as an operator: the login form
with a tenant's read key, the list, a click to each run, its timeline and
its verdict. The browser must load nothing from another host, and the key's
cookie must be out of any script's reach. The completed run's page is saved
as a screenshot in the test's tmp_path.

Chromium comes from the Debian package (`apt-get install chromium`, which
.ci/run does when /usr/bin/chromium is missing); no browser is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from service.model.phases import RunPhase
from service.store.migrations import upgrade
from tests.api.runs_api import RunsApi
from tests.support.authorities import open_authority
from tests.support.databases import sqlite_url
from tests.support.server import ServerProcess, running_server

CHROMIUM = Path("/usr/bin/chromium")
FAILURE = "handler crashed: the export target refused the file"
ACTION_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    url = sqlite_url(tmp_path)
    upgrade(url)
    with running_server(url, env={"ROK_AUTH": "required"}) as current:
        yield current


def new_key(server: ServerProcess, tenant: str, *scopes: str) -> str:
    """A key made as `rok keys create` makes it (the KeyStore on the server's database)."""
    authority = open_authority(server.database_url)
    try:
        _, secret = authority.keys.create(tenant, scopes, "browser test", authority.clock())
        return secret
    finally:
        authority.close()


def drive_runs(server: ServerProcess) -> tuple[str, str]:
    """(a completed run with all its evidence, a failed one), both of tenant acme, over HTTP."""
    admin = new_key(server, "ops", "admin")
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {admin}"}, timeout=30
    ) as http:
        api = RunsApi(http)
        done = api.at(RunPhase.COMPLETED, tenant_id="acme", handler="report")
        failed = api.at(RunPhase.EXECUTING, tenant_id="acme", handler="export")
        api.ack(failed, "policies", "evaluate_policy", error="policy engine unreachable")
        api.fail(failed, FAILURE)
    return done, failed


def open_run(page: Page, run_id: str) -> None:
    """From the list, click the run's link, as an operator does."""
    page.click(f'a[href="/ui/runs/{run_id}"]')
    page.wait_for_url(f"**/ui/runs/{run_id}")


def test_an_operator_logs_in_and_reads_a_run(
    browser: Browser, server: ServerProcess, tmp_path: Path
) -> None:
    done, failed = drive_runs(server)
    reader = new_key(server, "acme", "runs:read")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    try:
        page.goto(f"{server.base_url}/ui")
        page.wait_for_url("**/ui/login?next=*")
        page.fill("#key", reader)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.base_url}/ui")

        # the list: both runs of the tenant; the failed one marked incomplete
        rows = page.locator("tr.run")
        expect(rows).to_have_count(2)
        expect(page.locator(f'tr[data-run="{failed}"] .mark.incomplete')).to_have_text("incomplete")
        expect(page.locator('a.count[data-phase="COMPLETED"]')).to_have_attribute("data-count", "1")

        open_run(page, done)
        spans = page.locator("svg.timeline rect.phase-span")
        expect(spans).to_have_count(5)  # CREATED … FINALIZING; COMPLETED is the end mark
        expect(page.locator("svg.timeline circle.ack")).to_have_count(5)
        expect(page.locator("svg.timeline path.end")).to_have_count(1)
        expect(page.locator(".verdict-line")).to_contain_text("Governance verdict: passed")
        expect(page.locator("tr.pair .pair-status")).to_have_text(["OK"] * 5)
        assert page.locator("svg.timeline").bounding_box() is not None, "drawn, with a size"
        shot = tmp_path / "run-page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000

        page.go_back()
        open_run(page, failed)
        expect(page.locator(".verdict-line")).to_contain_text("Governance verdict: not checked")
        expect(page.locator(".run-error")).to_contain_text(FAILURE)
        expect(page.locator("svg.timeline path.end.phase-FAILED")).to_have_count(1)
        expect(page.locator("svg.timeline circle.ack-error")).to_have_count(1)
        expect(page.locator("tr.pair-FAILED")).to_contain_text("evaluate_policy")

        # the key: in an HttpOnly, SameSite=Strict cookie for /ui, out of reach of scripts
        cookies = context.cookies()
        assert [(c["name"], c["path"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
            ("rok_console_key", "/ui", True, "Strict")
        ]
        assert page.evaluate("document.cookie") == ""

        page.click("text=Log out")
        page.wait_for_url("**/ui/login")
        assert context.cookies() == []
    finally:
        context.close()
    foreign = [url for url in requested if not url.startswith((server.base_url, "data:"))]
    assert foreign == [], "the console loads nothing from another host"
    assert any(url.startswith(f"{server.base_url}/ui/static/") for url in requested)
