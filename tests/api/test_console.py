"""The operator console's pages (/ui), on both backends, with auth off.

The list: filters, counts per phase, stale and incomplete marks, paging. A
run's page: the SVG timeline (one rect per phase span), the contract against
its acks, the verdict, incidents, lease, error and any field the API serves.
No page loads anything from another host. The login and tenants are in
test_console_auth.py; the real browser in tests/browser.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from service.api.console import routes
from service.api.presenters import run_json
from service.model.phases import RunPhase
from tests.api.gates import Served, serving
from tests.api.runs_api import UNKNOWN_RUN

# the default contract's deadline is the run's timeout plus the grace period (5 s)
TIMEOUT_MS = 1000
PAST_THE_DEADLINE_S = 10


@pytest.fixture
def served(migrated_url: str) -> Iterator[Served]:
    with serving(migrated_url) as current:
        yield current


# -- reading pages -------------------------------------------------------------


class Elements(HTMLParser):
    """Every start tag of a page with its attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def elements(html: str) -> Elements:
    parsed = Elements()
    parsed.feed(html)
    return parsed


def page_text(html: str) -> str:
    """The page's words as a reader sees them: one space between each."""
    return " ".join(" ".join(elements(html).text).split())


def having(html: str, tag: str, **wanted: str) -> list[dict[str, str]]:
    """The attributes of each `tag` with the `wanted` ones (`class_`: one of its classes)."""

    def matches(attrs: dict[str, str]) -> bool:
        for key, value in wanted.items():
            if key == "class_":
                if value not in attrs.get("class", "").split():
                    return False
            elif attrs.get(key) != value:
                return False
        return True

    return [attrs for name, attrs in elements(html).tags if name == tag and matches(attrs)]


def html_page(response: httpx.Response, status: int = 200) -> str:
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def listed(html: str) -> list[str]:
    """The run ids of the list's rows, in order."""
    return [attrs["data-run"] for attrs in having(html, "tr", class_="run")]


def counts(html: str) -> dict[str, int]:
    return {a["data-phase"]: int(a["data-count"]) for a in having(html, "a", class_="count")}


def marks_of(html: str) -> dict[str, set[str]]:
    return {a["data-run"]: set(a["data-marks"].split()) for a in having(html, "tr", class_="run")}


def timeline_svg(html: str) -> ElementTree.Element:
    """The run page's timeline, parsed as XML (the server must draw it well-formed)."""
    found = re.search(r'<svg class="timeline".*?</svg>', html, re.DOTALL)
    assert found is not None, "no timeline on the page"
    return ElementTree.fromstring(found.group(0))


def svg_with_class(svg: ElementTree.Element, tag: str, css: str) -> list[ElementTree.Element]:
    return [e for e in svg.iter(tag) if css in e.get("class", "").split()]


# -- the list ------------------------------------------------------------------


def test_the_list_shows_every_run_with_counts_per_phase(served: Served) -> None:
    api = served.api
    done = api.at(RunPhase.COMPLETED, tenant_id="acme", handler="report")
    running = api.at(RunPhase.EXECUTING, tenant_id="acme", handler="export")
    failed = api.at(RunPhase.FAILED, tenant_id="globex", handler="report")
    waiting = api.create()["id"]

    html = html_page(served.http.get("/ui"))
    assert listed(html) == [waiting, failed, running, done], "newest first"
    assert counts(html) == {
        **dict.fromkeys([p.value for p in RunPhase], 0),
        "COMPLETED": 1,
        "EXECUTING": 1,
        "FAILED": 1,
        "CREATED": 1,
        "all": 4,
    }
    for run_id in (waiting, failed, running, done):
        assert having(html, "a", href=f"/ui/runs/{run_id}"), run_id


def test_the_list_filters_by_phase_tenant_and_handler(served: Served) -> None:
    api = served.api
    old_report = api.at(RunPhase.COMPLETED, tenant_id="acme", handler="report")
    old_export = api.at(RunPhase.FAILED, tenant_id="globex", handler="export")
    new_report = api.at(RunPhase.FAILED, tenant_id="acme", handler="report")
    new_export = api.create(tenant_id="acme", handler="export")["id"]

    def shown(**query: str) -> tuple[list[str], dict[str, int]]:
        html = html_page(served.http.get("/ui", params=query))
        return listed(html), counts(html)

    assert shown(phase="FAILED")[0] == [new_report, old_export]
    assert shown(phase="failed")[0] == [new_report, old_export], "a phase in any case"
    assert shown(tenant="acme")[0] == [new_export, new_report, old_report]
    assert shown(handler="export")[0] == [new_export, old_export]
    assert shown(tenant="acme", handler="report", phase="FAILED")[0] == [new_report]
    assert shown(tenant="initech")[0] == []
    # the counts follow every filter but the phase
    assert shown(tenant="acme", phase="FAILED")[1] == {
        **dict.fromkeys([p.value for p in RunPhase], 0),
        "COMPLETED": 1,
        "FAILED": 1,
        "CREATED": 1,
        "all": 3,
    }
    # empty fields (the form sends every field) filter nothing
    everything = [new_export, new_report, old_export, old_report]
    assert shown(phase="", tenant="", handler="", since="")[0] == everything


def test_created_since_keeps_the_runs_created_from_that_time(served: Served) -> None:
    api = served.api
    before = api.create()
    after = [api.create()["id"] for _ in range(3)]
    cut = api.get(after[0])["created_at"]  # the service's clock, not the test's
    assert before["created_at"] < cut
    html = html_page(served.http.get("/ui", params={"since": cut}))
    assert listed(html) == after[::-1]
    assert before["id"] not in html
    assert counts(html)["all"] == 3
    # a time without its zone is UTC
    naive = html_page(served.http.get("/ui", params={"since": cut.removesuffix("Z")}))
    assert listed(naive) == after[::-1]
    # a date alone is its midnight, UTC; a time to come leaves nothing
    day = html_page(served.http.get("/ui", params={"since": cut[:10]}))
    assert set(listed(day)) >= {before["id"], *after}
    later = html_page(served.http.get("/ui", params={"since": "9999-12-31"}))
    assert listed(later) == [] and counts(later)["all"] == 0


def test_paging_follows_the_cursor_links_to_the_end(served: Served) -> None:
    created = [served.api.create(handler="paged")["id"] for _ in range(5)]
    seen: list[str] = []
    path = "/ui?handler=paged&limit=2"
    pages = 0
    while path:
        html = html_page(served.http.get(path))
        seen += listed(html)
        pages += 1
        following = having(html, "a", rel="next")
        path = following[0]["href"] if following else ""
        assert "handler=paged" in path or not path, "the filters survive paging"
    assert pages == 3
    assert seen == created[::-1], "every run once, newest first"


def test_stale_and_incomplete_runs_are_marked(served: Served) -> None:
    api = served.api
    governed = api.at(RunPhase.COMPLETED)
    unchecked = api.at(RunPhase.FAILED)  # ended before any evidence: missing
    late = api.at(RunPhase.EXECUTING, run_timeout_ms=TIMEOUT_MS)
    # a check that did not pass (evidence missing), and the run completed anyway
    ungoverned = api.at(RunPhase.GOVERNANCE_CHECK)
    assert api.governance_check(ungoverned)["passed"] is False
    api.begin_finalization(ungoverned)
    api.finalize(ungoverned)
    html = html_page(served.http.get("/ui"))
    assert marks_of(html) == {
        governed: set(),
        unchecked: {"incomplete"},
        late: set(),
        ungoverned: {"incomplete"},
    }

    served.clock.advance(PAST_THE_DEADLINE_S)  # past the finalize deadline, still executing
    html = html_page(served.http.get("/ui"))
    assert marks_of(html)[late] >= {"stale"}
    assert marks_of(html)[governed] == set()
    assert "1 stale" in page_text(html)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"phase": "RUNNING"}, "phase 'RUNNING' is not one of CREATED"),
        ({"since": "yesterday"}, "since 'yesterday' is not a date"),
        ({"since": "2026-13-40"}, "since '2026-13-40' is not a date"),
        ({"limit": "0"}, "limit '0' is not a whole number 1-500"),
        ({"limit": "many"}, "limit 'many' is not a whole number"),
        ({"cursor": "not-a-cursor"}, "cursor 'not-a-cursor' is not a cursor"),
        ({"handler": "nul\x00"}, "handler"),
    ],
)
def test_a_bad_filter_is_a_422_page_naming_it(
    served: Served, query: dict[str, str], named: str
) -> None:
    run_id = served.api.create()["id"]
    before = served.api.get(run_id)
    html = html_page(served.http.get("/ui", params=query), 422)
    assert named in page_text(html)
    assert served.api.get(run_id) == before


# -- a run's page -----------------------------------------------------------------


def test_a_governed_run_shows_its_timeline_contract_and_verdict(served: Served) -> None:
    api = served.api
    run_id = api.create(tenant_id="acme", handler="report")["id"]
    api.authorize(run_id)
    api.begin_execution(run_id)
    api.execution_complete(run_id)
    api.ack(run_id, "incidents", "create_incident", result_id="INC-42", details={"sev": "low"})
    for domain, action in [
        ("policies", "evaluate_policy"),
        ("logs", "start_trace"),
        ("logs", "complete_trace"),
    ]:
        api.ack(run_id, domain, action, result_id=f"{action}-1")
    assert api.governance_check(run_id)["passed"] is True
    api.begin_finalization(run_id)
    api.finalize(run_id)

    html = html_page(served.http.get(f"/ui/runs/{run_id}"))
    text = page_text(html)
    svg = timeline_svg(html)
    spans = svg_with_class(svg, "rect", "phase-span")
    # CREATED, AUTHORIZED, EXECUTING, GOVERNANCE_CHECK, FINALIZING; COMPLETED is the end mark
    assert [s.get("class", "").split()[1] for s in spans] == [
        "phase-CREATED",
        "phase-AUTHORIZED",
        "phase-EXECUTING",
        "phase-GOVERNANCE_CHECK",
        "phase-FINALIZING",
    ]
    xs = [float(s.get("x", "nan")) for s in spans]
    assert xs == sorted(xs), "spans in time order, left to right"
    assert all(s.find("title") is not None for s in spans), "each span says its times"
    assert len(svg_with_class(svg, "path", "end")) == 1
    assert len(svg_with_class(svg, "circle", "ack")) == 5, "four domain acks and finalize_run"
    assert len(svg_with_class(svg, "rect", "attempt-span")) == 1
    assert svg_with_class(svg, "line", "attempt-boundary") == []
    lanes = [t.text for t in svg_with_class(svg, "text", "lane-label")]
    assert lanes == ["phase", "attempt", "incidents", "policies", "logs", "orchestrator"]
    ticks = [t.text or "" for t in svg_with_class(svg, "text", "tick-label")]
    assert ticks[0] == "0" and len(ticks) >= 2 and all(t.startswith("+") for t in ticks[1:])

    assert "Governance verdict: passed" in text
    assert "Reconciliation now: COMPLETE" in text
    statuses = [a["class"].split()[1] for a in having(html, "tr", class_="pair")]
    assert statuses == ["pair-OK"] * 5
    assert "INC-42" in text and 'sev: "low"' not in text and "sev: low" in text
    assert "Lease holder none" in text
    assert having(html, "meta", **{"http-equiv": "refresh"}) == [], "a finished run stays put"


def test_a_live_run_refreshes_and_shows_its_lease_holder(served: Served) -> None:
    run_id = served.api.create(handler="slow")["id"]
    claimed = served.http.post("/runs/claim", json={"worker_id": "worker-7", "lease_ms": 60000})
    assert claimed.status_code == 200, claimed.text
    html = html_page(served.http.get(f"/ui/runs/{run_id}"))
    text = page_text(html)
    refresh = having(html, "meta", **{"http-equiv": "refresh"})
    assert refresh and refresh[0]["content"] == str(routes.REFRESH_SECONDS)
    lease = re.search(r'<dd class="lease">(.*?)</dd>', html, re.DOTALL)
    assert lease is not None
    assert page_text(lease.group(1)).startswith("worker worker-7 , lease expires")
    assert "Governance verdict: not checked yet" in text
    svg = timeline_svg(html)
    live = svg_with_class(svg, "rect", "live")
    assert len(live) == 1 and "phase-CREATED" in live[0].get("class", "")
    assert svg_with_class(svg, "path", "end") == []
    statuses = {a["class"].split()[1] for a in having(html, "tr", class_="pair")}
    assert statuses == {"pair-PENDING"}


def test_a_failed_run_shows_its_error_and_each_pair_status(served: Served) -> None:
    api = served.api
    run_id = api.at(RunPhase.EXECUTING)
    api.execution_complete(run_id)
    api.ack(run_id, "incidents", "create_incident", result_id="INC-1")
    api.ack(run_id, "incidents", "create_incident", result_id="INC-2")  # twice: drift
    api.ack(run_id, "policies", "evaluate_policy", error="policy engine down")
    api.ack(run_id, "billing", "charge", result_id="ch-1")  # not in the contract
    assert api.governance_check(run_id)["passed"] is False
    api.fail(run_id, "governance failed: <logs missing> & more")

    html = html_page(served.http.get(f"/ui/runs/{run_id}"))
    text = page_text(html)
    rows = {
        tuple(page_text(m).split()[:2]): m
        for m in re.findall(r'<tr class="pair .*?</tr>', html, re.DOTALL)
    }
    status = {pair: re.search(r"pair pair-(\w+)", row).group(1) for pair, row in rows.items()}  # type: ignore[union-attr]
    assert status == {
        ("incidents", "create_incident"): "DRIFT",
        ("policies", "evaluate_policy"): "FAILED",
        ("logs", "start_trace"): "MISSING",
        ("logs", "complete_trace"): "MISSING",
        ("orchestrator", "finalize_run"): "OK",  # failing the run acks it
        ("billing", "charge"): "DRIFT",
    }
    assert "(not in the contract)" in rows[("billing", "charge")]
    assert "Governance verdict: failed" in text
    assert "governance failed: <logs missing> & more" in text, "the error, escaped"
    assert "&lt;logs missing&gt; &amp; more" in html
    assert "INC-1" in text and "INC-2" in text
    svg = timeline_svg(html)
    assert len(svg_with_class(svg, "circle", "ack-error")) == 1
    assert "phase-FAILED" in svg_with_class(svg, "path", "end")[0].get("class", "")


def test_attempts_are_drawn_with_their_boundaries(served: Served) -> None:
    run_id = served.api.create(max_attempts=2)["id"]
    claimed = served.http.post("/runs/claim", json={"worker_id": "w-1", "lease_ms": 60000})
    assert claimed.status_code == 200, claimed.text
    served.clock.advance(1)
    assert served.authority.kernel(run_id).release_for_retry("lease expired") == 2

    html = html_page(served.http.get(f"/ui/runs/{run_id}"))
    svg = timeline_svg(html)
    attempts = svg_with_class(svg, "rect", "attempt-span")
    assert [a.find("title").text.split(":")[0] for a in attempts] == [  # type: ignore[union-attr]
        "attempt 1 of 2",
        "attempt 2 of 2",
    ]
    boundaries = svg_with_class(svg, "line", "attempt-boundary")
    assert len(boundaries) == 1
    assert "lease expired" in (boundaries[0].find("title").text or "")  # type: ignore[union-attr]
    assert len(svg_with_class(svg, "rect", "phase-span")) == 1, "a retry does not move the phase"
    assert "attempt 2 begins in CREATED" in page_text(html)


def test_fields_the_api_adds_to_a_run_show_up(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A field the presenter serves appears on the page without a change to the console."""

    def with_more(record: Any, now: Any) -> dict[str, Any]:
        served_run = run_json(record, now)
        event = {
            "from": "CREATED",
            "to": "CREATED",
            "at": served_run["created_at"],
            "reason": "asked by the operator",
            "attempt": 1,
            "kind": "event",
            "details": {"event": "cancel_requested"},
            "actor": None,
        }
        return {
            **served_run,
            "history": [*served_run["history"], event],
            "result": {"rows": 1204, "file": "out.csv"},
            "cancel_requested": True,
            "not_before": served_run["created_at"],
        }

    monkeypatch.setattr(routes, "run_json", with_more)
    run_id = served.api.create(input={"query": "select 1"})["id"]
    html = html_page(served.http.get(f"/ui/runs/{run_id}"))
    assert_loads_nothing_foreign(html)
    fields = re.search(r'<section class="fields">.*?</section>', html, re.DOTALL)
    assert fields is not None
    text = page_text(fields.group(0))
    assert '"rows": 1204' in text and '"file": "out.csv"' in text
    assert "cancel_requested true" in text
    assert re.search(r"not_before \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC", text), "a time"
    assert '"query": "select 1"' in text
    # a control event: a mark on the timeline and a line of the history
    events = svg_with_class(timeline_svg(html), "path", "event")
    assert len(events) == 1 and "cancel_requested" in (events[0].findtext("title") or "")
    assert "event cancel_requested in CREATED" in page_text(html)


@pytest.mark.parametrize("run_id", [UNKNOWN_RUN, "not-a-uuid", "1"])
def test_an_unknown_run_is_a_404_page(served: Served, run_id: str) -> None:
    html = html_page(served.http.get(f"/ui/runs/{run_id}"), 404)
    assert f"no run {run_id}" in page_text(html)


# -- what the pages load -----------------------------------------------------------


LOADING_ATTRIBUTES = ("src", "href", "action", "srcset", "poster", "data", "formaction")


def assert_loads_nothing_foreign(html: str) -> None:
    """Every URL a page names is on this host: a path, a query or a fragment, or data:."""
    for tag, attrs in elements(html).tags:
        for name in LOADING_ATTRIBUTES:
            value = attrs.get(name)
            if value is None:
                continue
            assert value == "data:," or (
                value.startswith(("/", "?", "#")) and not value.startswith("//")
            ), f"<{tag} {name}={value!r}> names another host"
    assert "://" not in html, "no absolute URL anywhere (not even an SVG namespace)"
    assert "@import" not in html and "url(" not in html


def test_no_page_references_another_host(served: Served) -> None:
    done = served.api.at(RunPhase.COMPLETED)
    live = served.api.at(RunPhase.EXECUTING)
    pages = [
        html_page(served.http.get("/ui")),
        html_page(served.http.get(f"/ui/runs/{done}")),
        html_page(served.http.get(f"/ui/runs/{live}")),
        html_page(served.http.get(f"/ui/runs/{UNKNOWN_RUN}"), 404),
        html_page(served.http.get("/ui", params={"phase": "nope"}), 422),
    ]
    for html in pages:
        assert_loads_nothing_foreign(html)
    answer = served.http.get("/ui")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "style-src 'self'" in policy
    assert "script-src" not in policy, "no script at all"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
    sheets = having(pages[0], "link", rel="stylesheet")
    css = served.http.get(sheets[0]["href"])
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "url(" not in css.text and "@import" not in css.text and "://" not in css.text


def test_only_the_console_s_own_files_are_served(served: Served) -> None:
    for path in ("/ui/static/nope.css", "/ui/static/..%2Fpages.py", "/ui/static/%2e%2e"):
        assert served.http.get(path).status_code == 404, path


def test_the_console_is_not_part_of_the_api_contract(served: Served) -> None:
    paths = served.http.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui")]
