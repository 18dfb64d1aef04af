"""What `rok runs …` prints of an error answer, in each shape the service writes one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from service.ops_cli.client import describe_error
from service.ops_cli.exits import exit_code_for
from service.ops_cli.render import duration


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (404, {"detail": "run x not found"}, "run x not found"),
        (
            422,
            {"detail": [{"loc": ["body", "error"], "msg": "Field required", "type": "missing"}]},
            "error: Field required",
        ),
        (
            409,
            {
                "type": "about:blank",
                "title": "Conflict",
                "status": 409,
                "detail": "run x is FAILED: cannot move to FAILED",
                "code": "phase_conflict",
            },
            "run x is FAILED: cannot move to FAILED (phase_conflict)",
        ),
        (
            422,
            {
                "title": "Invalid request",
                "status": 422,
                "detail": "the request is invalid",
                "code": "invalid_request",
                "errors": [{"loc": ["query", "limit"], "msg": "too big"}],
            },
            "the request is invalid; query.limit: too big (invalid_request)",
        ),
        (503, {"title": "Service Unavailable", "status": 503}, "Service Unavailable"),
        (502, "<html>bad gateway</html>", "<html>bad gateway</html>"),
    ],
)
def test_the_service_detail_is_what_is_said(status: int, body: Any, said: str) -> None:
    if isinstance(body, str):
        answer = httpx.Response(status, text=body)
    else:
        answer = httpx.Response(status, json=body)

    assert describe_error(answer) == said


@pytest.mark.parametrize(
    ("status", "code"),
    [(409, 1), (429, 1), (400, 2), (422, 2), (404, 3), (401, 4), (403, 4), (500, 5), (503, 5)],
)
def test_each_status_has_its_exit_code(status: int, code: int) -> None:
    assert exit_code_for(status) == code


@pytest.mark.parametrize(
    ("span", "shown"),
    [
        (timedelta(0), "0ms"),
        (timedelta(milliseconds=840), "840ms"),
        (timedelta(seconds=12.34), "12.3s"),
        (timedelta(minutes=4, seconds=5), "4m05s"),
        (timedelta(hours=2, minutes=3), "2h03m"),
        (timedelta(days=3, hours=4), "3d04h"),
        (timedelta(seconds=-1), "0ms"),
    ],
)
def test_durations_read_as_a_person_reads_them(span: timedelta, shown: str) -> None:
    assert duration(span) == shown
