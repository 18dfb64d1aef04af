"""The console with ROK_AUTH=required: the login form, its cookie, and tenants; both backends.

The key is asked once and kept in an HttpOnly, SameSite=Strict cookie for
/ui only: the JSON API never takes it. A form posted from another site is
refused. A key sees its own tenant's runs only (admin keys see all); a run of
another tenant is a 404 page and absent from the list and its counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from service.api.auth import CONSOLE_COOKIE
from tests.api.gates import Served, serving
from tests.api.test_console import (
    assert_loads_nothing_foreign,
    counts,
    html_page,
    listed,
    page_text,
)


@pytest.fixture
def served(migrated_url: str) -> Iterator[Served]:
    with serving(migrated_url, auth="required") as current:
        yield current


def secret_of(served: Served, *scopes: str, tenant: str = "acme") -> str:
    _, secret = served.authority.keys.create(tenant, scopes, "console", served.clock())
    return secret


def log_in(served: Served, secret: str, back: str = "/ui") -> httpx.Response:
    response: httpx.Response = served.http.post(
        "/ui/login",
        data={"key": secret, "next": back},
        headers={"Origin": str(served.http.base_url).rstrip("/"), "Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    return response


def cookie_attributes(response: httpx.Response) -> dict[str, str]:
    """The attributes of the console cookie set by `response` (lower-case names)."""
    header = next(h for h in response.headers.get_list("set-cookie") if CONSOLE_COOKIE in h)
    attributes = {}
    for part in header.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        attributes[name.lower()] = value
    return attributes


def test_without_a_key_the_console_sends_to_its_login_form(served: Served) -> None:
    for path in ("/ui", "/ui/runs/00000000-0000-4000-8000-000000000000?x=1"):
        answer = served.http.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        target = urlsplit(answer.headers["location"])
        assert target.path == "/ui/login"
        assert parse_qs(target.query)["next"] == [path]
    form = html_page(served.http.get("/ui/login"))
    assert 'name="key"' in form and 'type="password"' in form
    assert served.http.get("/ui/static/console.css").status_code == 200, "no key for the style"


def test_the_login_keeps_the_key_in_a_strict_http_only_cookie(served: Served) -> None:
    admin = {"Authorization": f"Bearer {secret_of(served, 'admin')}"}
    made = served.http.post("/runs", json={"handler": "h", "tenant_id": "acme"}, headers=admin)
    run_id = made.json()["id"]
    secret = secret_of(served, "runs:read")
    answer = log_in(served, secret, back=f"/ui/runs/{run_id}")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/ui/runs/{run_id}", "back where the operator was"
    attributes = cookie_attributes(answer)
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "strict"
    assert attributes["path"] == "/ui"
    assert "secure" not in attributes, "plain http: a Secure cookie would never come back"
    # the client keeps the cookie: the console now answers without asking again
    page = html_page(served.http.get(f"/ui/runs/{run_id}"))
    assert run_id in page
    assert "Log out" in page_text(page)


def test_over_https_the_cookie_is_secure(migrated_url: str) -> None:
    with serving(migrated_url, auth="required") as served:
        served.http.base_url = httpx.URL("https://rok.test")
        answer = log_in(served, secret_of(served, "runs:read"))
        assert answer.status_code == 303
        assert "secure" in cookie_attributes(answer)


@pytest.mark.parametrize(
    "elsewhere",
    ["https://evil.example/ui", "//evil.example/ui", "/runs", "/uix", "/ui\\@evil.example", ""],
)
def test_the_login_sends_back_to_console_pages_only(served: Served, elsewhere: str) -> None:
    form = html_page(served.http.get("/ui/login", params={"next": elsewhere}))
    assert_loads_nothing_foreign(form)
    assert 'name="next" value="/ui"' in form
    answer = log_in(served, secret_of(served, "runs:read"), back=elsewhere)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui"


def test_a_bad_key_sets_no_cookie(served: Served) -> None:
    unknown = "rok_0123456789abcdef_" + "x" * 43
    for secret, status, said in [
        (unknown, 401, "That key is unknown or revoked."),
        ("", 401, "Enter an API key."),
        (secret_of(served, "worker"), 403, "lacks the runs:read scope"),
    ]:
        answer = log_in(served, secret)
        assert answer.status_code == status
        assert said in page_text(answer.text)
        assert CONSOLE_COOKIE not in answer.headers.get("set-cookie", "")
    assert served.http.get("/ui", follow_redirects=False).status_code == 303


def test_the_json_api_never_takes_the_console_cookie(served: Served) -> None:
    """A cookie comes along with requests other sites make: the API would be open to CSRF."""
    assert log_in(served, secret_of(served, "admin")).status_code == 303
    assert served.http.cookies.get(CONSOLE_COOKIE), "the client holds the cookie"
    secret = served.http.cookies[CONSOLE_COOKIE]
    sent = {"Cookie": f"{CONSOLE_COOKIE}={secret}"}
    for method, path in [("GET", "/runs"), ("POST", "/runs"), ("POST", "/runs/claim")]:
        answer = served.http.request(method, path, json={}, headers=sent)
        assert answer.status_code == 401, (method, path)
    assert served.http.get("/ui", headers=sent).status_code == 200, "the console does"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://rok.test"},
    ],
)
def test_a_login_posted_from_another_site_is_refused(
    served: Served, headers: dict[str, str]
) -> None:
    secret = secret_of(served, "admin")
    answer = served.http.post(
        "/ui/login", data={"key": secret}, headers=headers, follow_redirects=False
    )
    assert answer.status_code == 403
    assert "another" in answer.json()["detail"]
    assert "set-cookie" not in answer.headers
    logout = served.http.post("/ui/logout", headers=headers, follow_redirects=False)
    assert logout.status_code == 403


def test_a_login_without_browser_headers_is_a_client_no_site_drives(served: Served) -> None:
    answer = served.http.post(
        "/ui/login", data={"key": secret_of(served, "runs:read")}, follow_redirects=False
    )
    assert answer.status_code == 303


def test_logging_out_forgets_the_key(served: Served) -> None:
    assert log_in(served, secret_of(served, "runs:read")).status_code == 303
    assert served.http.get("/ui").status_code == 200
    answer = served.http.post(
        "/ui/logout", headers={"Sec-Fetch-Site": "same-origin"}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    attributes = cookie_attributes(answer)
    assert attributes["max-age"] == "0" and attributes["path"] == "/ui"
    assert served.http.get("/ui", follow_redirects=False).status_code == 303


def test_a_key_revoked_after_the_login_is_asked_for_again(served: Served) -> None:
    secret = secret_of(served, "runs:read")
    assert log_in(served, secret).status_code == 303
    key_id = secret.split("_")[1]
    served.authority.keys.revoke(key_id, served.clock())
    answer = served.http.get("/ui", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")
    assert cookie_attributes(answer)["max-age"] == "0"


def test_a_bearer_header_works_on_the_console_too(served: Served) -> None:
    secret = secret_of(served, "runs:read")
    page = served.http.get("/ui", headers={"Authorization": f"Bearer {secret}"})
    assert page.status_code == 200


def test_a_key_sees_its_own_tenant_only(served: Served) -> None:
    admin = {"Authorization": f"Bearer {secret_of(served, 'admin')}"}

    def create(tenant: str) -> str:
        answer = served.http.post(
            "/runs", json={"tenant_id": tenant, "handler": "h"}, headers=admin
        )
        assert answer.status_code == 201, answer.text
        run_id: str = answer.json()["id"]
        return run_id

    ours, theirs = create("acme"), create("globex")
    served.http.post(f"/runs/{theirs}/fail", json={"error": "theirs"}, headers=admin)

    assert log_in(served, secret_of(served, "runs:read", tenant="acme")).status_code == 303
    html = html_page(served.http.get("/ui"))
    assert listed(html) == [ours]
    assert theirs not in html
    assert counts(html)["all"] == 1 and counts(html)["FAILED"] == 0
    assert "tenant acme" in page_text(html)
    assert html_page(served.http.get(f"/ui/runs/{ours}"))
    missing = html_page(served.http.get(f"/ui/runs/{theirs}"), 404)
    assert "theirs" not in page_text(missing)
    forbidden = html_page(served.http.get("/ui", params={"tenant": "globex"}), 403)
    assert "cannot act for tenant 'globex'" in page_text(forbidden)
    assert listed(html_page(served.http.get("/ui", params={"tenant": "acme"}))) == [ours]

    # an admin key sees every tenant
    served.http.post("/ui/logout", follow_redirects=False)
    assert log_in(served, secret_of(served, "admin", tenant="ops")).status_code == 303
    everything = html_page(served.http.get("/ui"))
    assert listed(everything) == [theirs, ours]
    assert "every tenant" in page_text(everything)
    assert listed(html_page(served.http.get("/ui", params={"tenant": "globex"}))) == [theirs]
    assert html_page(served.http.get(f"/ui/runs/{theirs}"))


def test_with_auth_off_no_login_is_asked(migrated_url: str) -> None:
    with serving(migrated_url) as served:
        assert served.http.get("/ui", follow_redirects=False).status_code == 200
        answer = served.http.get("/ui/login", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui"
        assert "Log out" not in page_text(served.http.get("/ui").text)
        refused = served.http.get("/ui", headers={"Host": "rok.example"})
        assert refused.status_code == 403, "loopback only, as the API"
        cross = served.http.post(
            "/ui/login", data={"key": "x"}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert cross.status_code == 403
