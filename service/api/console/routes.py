"""The console's pages: the runs list, a run, the login form, the stylesheet.

Reads go through the app's Authority like the JSON API's (the same tenant
confinement: a run of another tenant is a 404 here too); nothing here calls
the API over HTTP. AuthGate (service.api.auth) has established the caller,
from the console's cookie or an Authorization header, before a page runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from service.api.auth import (
    CONSOLE_COOKIE,
    CONSOLE_LOGIN,
    CONSOLE_PREFIX,
    Principal,
    forget_console_key,
    is_console,
    principal_from_key,
    principal_of,
)
from service.api.console import evidence, listing, timeline
from service.api.console.pages import is_live, render, static_file
from service.api.deps import AuthorityDep, require, require_tenant
from service.api.presenters import run_json
from service.api.routes.common import caller
from service.errors import Forbidden, InvalidRequest, RunNotFound
from service.model.audit import ReconciliationStatus
from service.store.keys import RUNS_READ

router = APIRouter(prefix=CONSOLE_PREFIX, include_in_schema=False)

REFRESH_SECONDS = 5
"""How often a live run's page reloads itself (a meta refresh: no script)."""


@dataclass(frozen=True)
class Viewer:
    """Who the header says is looking, and whether there is a session to end."""

    label: str
    can_log_out: bool


def _viewer(request: Request, principal: Principal) -> Viewer:
    if not request.app.state.authority.settings.auth_required:
        return Viewer("no key needed (ROK_AUTH=off, this machine only)", False)
    who = f"key {principal.key_id}"
    seen = "every tenant" if principal.tenant_scope is None else f"tenant {principal.tenant_id}"
    return Viewer(f"{who} · {seen}", True)


def _reader(request: Request) -> Principal:
    """The caller, who must be allowed to read runs (Forbidden otherwise)."""
    principal = principal_of(request.scope)
    if principal is None:  # AuthGate lets no console page through without one
        raise Forbidden("the console needs an API key: log in at /ui/login")
    require(principal, RUNS_READ)
    return principal


def _problem(request: Request, status: int, message: str) -> Response:
    principal = principal_of(request.scope)
    return render(
        "error.html",
        status_code=status,
        status=status,
        message=message,
        viewer=_viewer(request, principal) if principal else None,
    )


@router.get("")
def runs_page(request: Request, authority: AuthorityDep) -> Response:
    try:
        principal = _reader(request)
        query = listing.parse_query(dict(request.query_params))
        query = listing.confined(query, require_tenant(principal, query.filters.tenant_id))
        summaries, next_cursor = listing.list_page(authority.database, query)
        counts = listing.phase_counts(authority.database, query)
    except Forbidden as exc:
        return _problem(request, 403, str(exc))
    except InvalidRequest as exc:
        return _problem(request, 422, str(exc))
    now = authority.clock()
    rows = []
    for summary in summaries:
        status = summary.reconciliation_status(now)
        rows.append((summary, status, listing.marks(summary, status, now)))
    return render(
        "runs.html",
        viewer=_viewer(request, principal),
        query=query,
        tenant_fixed=principal.tenant_scope is not None,
        rows=rows,
        counts=counts,
        total=sum(counts.values()),
        next_cursor=next_cursor,
        stale=sum("stale" in m for _, _, m in rows),
        incomplete=sum("incomplete" in m for _, _, m in rows),
    )


@router.get("/runs/{run_id}")
def run_page(run_id: str, request: Request, authority: AuthorityDep) -> Response:
    try:
        principal = _reader(request)
        try:
            UUID(run_id)
        except ValueError:
            raise RunNotFound(run_id) from None
        record = authority.kernel(run_id, caller=caller(principal)).load()
    except Forbidden as exc:
        return _problem(request, 403, str(exc))
    except RunNotFound:
        return _problem(request, 404, f"no run {run_id} (in the runs this key may see)")
    now = authority.clock()
    run = run_json(record, now)
    live = is_live(record.phase)
    return render(
        "run.html",
        viewer=_viewer(request, principal),
        run=run,
        live=live,
        refresh_seconds=REFRESH_SECONDS if live else None,
        drawing=timeline.draw(run, now),
        contract=evidence.contract_rows(run),
        other_fields=evidence.other_fields(run),
        is_scalar=evidence.is_scalar,
        now=now,
        complete=ReconciliationStatus.COMPLETE.value,
    )


# -- the session --------------------------------------------------------------


def _back_to(target: str | None) -> str:
    """Where to go after the login: a console page named by the form, else the runs list."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and is_console(parts.path):
            return target
    return CONSOLE_PREFIX


@router.get("/login")
def login_form(
    request: Request, back: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    if not request.app.state.authority.settings.auth_required:
        return RedirectResponse(_back_to(back), status_code=303)
    return render("login.html", next=_back_to(back), message=None, viewer=None)


@router.post("/login")
async def log_in(request: Request, authority: AuthorityDep) -> Response:
    """Check the key once, then keep it in a cookie only the console's own pages get.

    HttpOnly: no script can read it; SameSite=Strict: no other site's page or
    link makes the browser send it; Path=/ui: the JSON API never receives it
    (and AuthGate would not read it there).
    """
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    target = _back_to(next(iter(form.get("next", [])), None))
    if not authority.settings.auth_required:
        return RedirectResponse(target, status_code=303)
    presented = (form.get("key") or [""])[0].strip()
    key = await run_in_threadpool(authority.keys.authenticate, presented) if presented else None
    if key is None:
        message = "That key is unknown or revoked." if presented else "Enter an API key."
        return render("login.html", 401, next=target, message=message, viewer=None)
    if not principal_from_key(key).can(RUNS_READ):
        message = f"Key {key.id} lacks the runs:read scope the console needs."
        return render("login.html", 403, next=target, message=message, viewer=None)
    answer = RedirectResponse(target, status_code=303)
    answer.set_cookie(
        CONSOLE_COOKIE,
        presented,
        path=CONSOLE_PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return answer


@router.post("/logout")
def log_out() -> Response:
    answer = RedirectResponse(CONSOLE_LOGIN, status_code=303)
    answer.headers.append("set-cookie", forget_console_key())
    return answer


@router.get("/static/{name}")
def static(name: str) -> Response:
    return static_file(name)
