"""Who is calling: every request has a principal (DESIGN section 9).

`AuthGate` is the outermost gate after the body limit. With ROK_AUTH=required
it turns `Authorization: Bearer <key>` into a Principal (401 for none, an
unknown or a revoked key); with ROK_AUTH=off every caller is the anonymous
principal, but only from this machine: a request whose Host is not a loopback
name, or whose Origin / Sec-Fetch-Site says another site sent it, is refused,
so neither a web page nor DNS rebinding can drive runs on a laptop.

The principal is kept in the request's scope, where the routes' dependency
(deps.PrincipalDep), the rate limit and the Idempotency-Key replay find it.

The operator console (/ui, service.api.console) also takes the key from its
cookie, and only there: a browser sends a cookie with requests other sites
make it send, so the JSON API, which acts on runs, never reads one. A console
request without a usable key is sent to the login form (303), not answered
401; a form posted to /ui from another site is refused (403) whatever ROK_AUTH.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import anyio.to_thread
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import FORBIDDEN, UNAUTHORIZED, ProblemKind, send_problem
from service.config import Settings
from service.store.keys import ADMIN, ApiKey, KeyStore

ANONYMOUS_ID = "anonymous"
# Paths that show no run: liveness, readiness, version, metrics and the docs.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/version", "/metrics", "/docs", "/redoc", "/openapi.json"}
)
PUBLIC_PREFIXES = ("/docs/", "/redoc/")
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})

CONSOLE_PREFIX = "/ui"
CONSOLE_COOKIE = "rok_console_key"
"""The console's cookie: the API key its login form was given (HttpOnly, SameSite=Strict)."""
CONSOLE_LOGIN = "/ui/login"
CONSOLE_LOGOUT = "/ui/logout"
# Console paths that show no run, so need no key: the login form, logout, the stylesheet.
CONSOLE_OPEN_PATHS = frozenset({CONSOLE_LOGIN, CONSOLE_LOGOUT})
CONSOLE_OPEN_PREFIXES = ("/ui/static/",)


@dataclass(frozen=True)
class Principal:
    """The caller of one request: an API key, or the anonymous caller with auth off."""

    key_id: str | None
    """The key's id, recorded as `actor` on what it writes; None when anonymous."""
    tenant_id: str | None
    """The tenant whose runs this caller sees; None: every tenant (admin, auth off)."""
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    @property
    def id(self) -> str:
        """Stable name for per-principal state (idempotency, rate limits)."""
        return self.key_id or ANONYMOUS_ID

    def can(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes

    def sees(self, tenant_id: str | None) -> bool:
        """Whether a run of `tenant_id` exists for this caller (else it is a 404)."""
        return self.tenant_id is None or self.is_admin or tenant_id == self.tenant_id

    @property
    def tenant_scope(self) -> str | None:
        """The tenant to confine reads and moves to; None for every tenant."""
        return None if self.is_admin else self.tenant_id


ANONYMOUS = Principal(None, None, frozenset({ADMIN}))


def principal_from_key(key: ApiKey) -> Principal:
    return Principal(key.id, key.tenant_id, key.scopes)


def principal_of(scope: Scope) -> Principal | None:
    """The principal AuthGate established for this request (None on a public path)."""
    state = scope.get("state") or {}
    principal = state.get("principal")
    return principal if isinstance(principal, Principal) else None


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def is_console(path: str) -> bool:
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


def is_console_open(path: str) -> bool:
    return path in CONSOLE_OPEN_PATHS or path.startswith(CONSOLE_OPEN_PREFIXES)


def is_loopback_host(host: str) -> bool:
    """A Host or Origin host name that can only mean this machine."""
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and "]" in name:
        name = name[1 : name.index("]")]
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """`host[:port]` or `[v6]:port` without the port."""
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def local_request_refusal(headers: dict[str, str]) -> str | None:
    """Why a request to a service with auth off cannot come from this machine, or None."""
    host = headers.get("host", "")
    if not is_loopback_host(_host_name(host)):
        return (
            f"Host {host!r} is not a loopback name: with ROK_AUTH=off rok answers only "
            "requests addressed to localhost (use a key and ROK_AUTH=required to serve others)"
        )
    origin = headers.get("origin")
    if origin is not None:
        origin_host = urlsplit(origin).hostname if origin != "null" else None
        if origin_host is None or not is_loopback_host(origin_host):
            return f"Origin {origin!r} is another site: with ROK_AUTH=off no web page may call rok"
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return "a cross-site request (Sec-Fetch-Site: cross-site): with ROK_AUTH=off rok refuses it"
    return None


def cross_site_refusal(headers: dict[str, str]) -> str | None:
    """Why a form posted to the console did not come from the console's own pages, or None.

    Browsers send Sec-Fetch-Site with every request (it says where the page that
    sent it lives, and holds behind a proxy that rewrites Host); older ones
    send Origin with every POST. A client that sends neither (curl) is no
    browser another site could drive.
    """
    site = headers.get("sec-fetch-site", "").lower()
    if site:
        if site in ("same-origin", "none"):
            return None
        return f"a form sent from another site (Sec-Fetch-Site: {site}): the console refuses it"
    origin = headers.get("origin")
    if origin is None:
        return None
    if origin != "null" and urlsplit(origin).netloc.lower() == headers.get("host", "").lower():
        return None
    return f"a form sent from another origin ({origin!r}): the console refuses it"


def _bearer(headers: dict[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _console_key(headers: dict[str, str]) -> str | None:
    value = cookie_parser(headers.get("cookie", "")).get(CONSOLE_COOKIE, "").strip()
    return value or None


class AuthGate:
    """ASGI middleware: establish the principal, or answer 401/403 before the app."""

    def __init__(self, app: ASGIApp, settings: Settings, keys: Callable[[], KeyStore]) -> None:
        self.app = app
        self.settings = settings
        self.keys = keys  # a getter: the store exists only once the lifespan opened it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        console = is_console(path)
        if console and scope["method"] not in ("GET", "HEAD"):
            refusal = cross_site_refusal(headers)
            if refusal is not None:
                await _refuse(scope, send, FORBIDDEN, refusal)
                return
        if not self.settings.auth_required:
            refusal = local_request_refusal(headers)
            if refusal is not None:
                await _refuse(scope, send, FORBIDDEN, refusal)
                return
            principal = ANONYMOUS
        elif console and is_console_open(path):
            await self.app(scope, receive, send)
            return
        else:
            # the cookie only on the console: the API's callers prove who they are each time
            token = _bearer(headers) or (_console_key(headers) if console else None)
            if token is None:
                if console:
                    await _to_login(scope, send, forget=False)
                    return
                await _refuse(
                    scope,
                    send,
                    UNAUTHORIZED,
                    "this endpoint needs an API key: send Authorization: Bearer <key>",
                )
                return
            keys = self.keys()
            # a key seen lately needs no read (service.store.key_cache), nor a thread
            key = keys.cached(token) or await anyio.to_thread.run_sync(keys.authenticate, token)
            if key is None:
                if console:  # revoked since the login: ask again
                    await _to_login(scope, send, forget=True)
                    return
                await _refuse(
                    scope, send, UNAUTHORIZED, "the API key is unknown or revoked", "invalid_token"
                )
                return
            principal = principal_from_key(key)
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def _to_login(scope: Scope, send: Send, forget: bool) -> None:
    """303 to the console's login form, which sends the operator back here after it."""
    query = scope.get("query_string", b"").decode("latin-1")
    back = scope["path"] + (f"?{query}" if query else "")
    headers = [
        (b"location", f"{CONSOLE_LOGIN}?next={quote(back, safe='')}".encode("latin-1")),
        (b"content-length", b"0"),
        (b"cache-control", b"no-store"),
    ]
    if forget:
        headers.append((b"set-cookie", forget_console_key().encode("latin-1")))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def forget_console_key() -> str:
    """The Set-Cookie header value that removes the console's cookie."""
    return (
        f"{CONSOLE_COOKIE}=; Path={CONSOLE_PREFIX}; Max-Age=0; "
        "expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict"
    )


async def _refuse(
    scope: Scope, send: Send, kind: ProblemKind, detail: str, error: str | None = None
) -> None:
    await send_problem(scope, send, kind, detail, challenge_error=error)
